"""tools/verify_audit_log.py, run as an inspector would: a separate, isolated Python process."""

from __future__ import annotations

import ast
import asyncio
import base64
import importlib.util
import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.canonical import canonical_bytes
from services.audit.checkpoint import (
    NoteSigner,
    consistency_proof_document,
    export_lines,
    make_signer,
    sign_checkpoint,
)
from services.audit.merkle import MemoryNodeStore, MerkleLog

TOOL = Path(__file__).resolve().parents[3] / "tools" / "verify_audit_log.py"
ORIGIN = "audit.lienthong.example/log"
N = 37


def record(i: int, fork: str = "") -> dict:
    return {"seq": i, "type": "vn.gov.lienthong.dossier.received", "fork": fork,
            "ma_ho_so": f"000.00.12.H56-250101-{i:04d}", "nguoi_nop": "Trần Văn Bình"}


async def make_log(records: list[dict]) -> MerkleLog:
    log = MerkleLog(MemoryNodeStore())
    await log.append_many([canonical_bytes(r) for r in records[:5]])
    await log.append_many([canonical_bytes(r) for r in records[5:]])
    return log


async def checkpoint_at(log: MerkleLog, signer: NoteSigner, size: int) -> str:
    return sign_checkpoint(signer=signer, origin=ORIGIN, size=size, root=await log.root(size))


async def write_export(path: Path, log: MerkleLog, checkpoint: str, records: list[dict],
                       indices: list[int], complete_range: tuple[int, int] | None) -> Path:
    entries = [(i, canonical_bytes(records[i])) for i in indices]
    with path.open("w", encoding="utf-8") as f:
        async for line in export_lines(log=log, checkpoint=checkpoint, entries=entries,
                                       complete_range=complete_range, chunk=8):
            f.write(line)
    return path


class World:
    """A log of N records, its signer, and files an inspector would have been handed."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.signer = make_signer(ORIGIN, Ed25519PrivateKey.generate())
        self.records = [record(i) for i in range(N)]
        self.log = asyncio.run(make_log(self.records))
        self.checkpoint = asyncio.run(checkpoint_at(self.log, self.signer, N))

    def export(self, name: str = "export.jsonl", indices: list[int] | None = None,
               complete_range: tuple[int, int] | None = (0, N)) -> Path:
        indices = list(range(N)) if indices is None else indices
        return asyncio.run(write_export(self.tmp / name, self.log, self.checkpoint, self.records,
                                        indices, complete_range))

    def verify(self, export: Path, *extra: str, key: str | None = None
               ) -> subprocess.CompletedProcess[str]:
        # -I: no PYTHONPATH, no current directory on the path — nothing of ours is importable.
        return subprocess.run(
            [sys.executable, "-I", str(TOOL), str(export), "--key", key or self.signer.verifier_key,
             *extra], capture_output=True, text=True, cwd=self.tmp, timeout=60)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def edit_entry(export: Path, index: int, change) -> None:
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    for n, line in enumerate(lines[1:], start=1):
        entry = json.loads(line)
        if entry["index"] == index:
            change(entry)
            lines[n] = json.dumps(entry, ensure_ascii=False) + "\n"
    export.write_text("".join(lines), encoding="utf-8")


def alter_record(entry: dict) -> None:
    """What a forger does: change the record but keep it canonical JSON."""
    rec = json.loads(entry["leaf"])
    rec["nguoi_nop"] = "Người khác"
    entry["leaf"] = rfc8785.dumps(rec).decode()


def test_a_good_export_verifies(world: World) -> None:
    result = world.verify(world.export())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK: checkpoint of {ORIGIN} at size {N}")
    assert f"{N} entries verified (indices 0..{N - 1}, complete)" in result.stdout


def test_a_changed_record_is_named_by_its_index(world: World) -> None:
    export = world.export()
    edit_entry(export, 17, alter_record)
    edit_entry(export, 30, alter_record)
    result = world.verify(export)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: entry 17:"), result.stdout


def test_a_changed_record_with_a_forged_proof_is_still_named(world: World) -> None:
    export = world.export()

    def forge(entry: dict) -> None:
        alter_record(entry)
        entry["proof"][0] = base64.b64encode(bytes(32)).decode()

    edit_entry(export, 4, forge)
    result = world.verify(export)
    assert result.returncode == 1 and result.stdout.startswith("FAIL: entry 4:"), result.stdout


def test_a_record_re_encoded_non_canonically_is_named(world: World) -> None:
    export = world.export()
    edit_entry(export, 9, lambda e: e.update(leaf=json.dumps(json.loads(e["leaf"]), indent=1)))
    result = world.verify(export)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: entry 9:") and "canonical" in result.stdout


def test_a_tampered_checkpoint_signature_fails(world: World) -> None:
    export = world.export()
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    header = json.loads(lines[0])
    text, sig_line = header["checkpoint"].split("\n\n")
    prefix, encoded = sig_line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 0x01
    header["checkpoint"] = f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    lines[0] = json.dumps(header, ensure_ascii=False) + "\n"
    export.write_text("".join(lines), encoding="utf-8")
    result = world.verify(export)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: checkpoint:"), result.stdout


def test_a_checkpoint_for_another_key_fails(world: World) -> None:
    other = make_signer(ORIGIN, Ed25519PrivateKey.generate())
    result = world.verify(world.export(), key=other.verifier_key)
    assert result.returncode == 1 and "not signed by the given key" in result.stdout


def test_a_range_export_verifies_and_a_missing_entry_is_named(world: World) -> None:
    export = world.export("range.jsonl", list(range(10, 30)), (10, 30))
    result = world.verify(export)
    assert result.returncode == 0, result.stdout
    assert "20 entries verified (indices 10..29, complete)" in result.stdout

    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    without_15 = [ln for ln in lines if '"index": 15,' not in ln]
    export.write_text("".join(without_15), encoding="utf-8")
    result = world.verify(export)
    assert result.returncode == 1 and result.stdout.startswith("FAIL: entry 15: missing")

    export.write_text("".join(lines[:-1]), encoding="utf-8")
    result = world.verify(export)
    assert result.returncode == 1 and result.stdout.startswith("FAIL: entry 29: missing")


def test_a_selection_of_entries_verifies(world: World) -> None:
    result = world.verify(world.export("dossier.jsonl", [2, 3, 19, 36], None))
    assert result.returncode == 0, result.stdout
    assert "4 entries verified (indices 2..36)" in result.stdout


def _previous(world: World, old_checkpoint: str, old_size: int) -> list[str]:
    (world.tmp / "old.txt").write_text(old_checkpoint, encoding="utf-8")
    doc = asyncio.run(consistency_proof_document(log=world.log, old_size=old_size, new_size=N))
    (world.tmp / "proof.json").write_text(json.dumps(doc), encoding="utf-8")
    return ["--previous-checkpoint", str(world.tmp / "old.txt"),
            "--consistency-proof", str(world.tmp / "proof.json")]


@pytest.mark.parametrize("old_size", [1, 13, 16, N])
def test_consistency_with_an_earlier_checkpoint(world: World, old_size: int) -> None:
    old = asyncio.run(checkpoint_at(world.log, world.signer, old_size))
    result = world.verify(world.export(), *_previous(world, old, old_size))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"consistent with the previous checkpoint at size {old_size}" in result.stdout


@pytest.mark.parametrize("old_size", [20, N])
def test_a_checkpoint_from_a_forked_log_is_caught(world: World, old_size: int) -> None:
    # Same key, same origin: the log showed one inspector a history that diverges at entry 10.
    forked_records = world.records[:10] + [record(i, fork="x") for i in range(10, N)]
    forked = asyncio.run(make_log(forked_records))
    old = asyncio.run(checkpoint_at(forked, world.signer, old_size))
    result = world.verify(world.export(), *_previous(world, old, old_size))
    assert result.returncode == 1
    assert "not consistent with the previous checkpoint" in result.stdout, result.stdout


def test_unreadable_input_is_an_error_not_a_verdict(world: World) -> None:
    assert world.verify(world.tmp / "absent.jsonl").returncode == 2
    garbage = world.tmp / "garbage.jsonl"
    garbage.write_text("not json\n", encoding="utf-8")
    assert world.verify(garbage).returncode == 2
    assert world.verify(world.export(), key="not+a+key").returncode == 2


def test_the_tool_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(TOOL.read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - sys.stdlib_module_names == {"cryptography"}


def _load_tool():
    spec = importlib.util.spec_from_file_location("verify_audit_log", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tools_canonical_json_check_agrees_with_rfc8785() -> None:
    tool = _load_tool()
    rng = random.Random(8785)
    floats = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(3000)]
    floats += [1e21, 1e20, 1e-6, 1e-7, 123.456, -0.5, 5e-324, 1.7976931348623157e308, 9007199254740993.0]
    for value in floats:
        if value == value and abs(value) != float("inf"):
            assert tool.es6_number(value) == rfc8785.dumps(value).decode(), repr(value)
    samples = [{"a": 1, "b": [1.5, None, True, "x\n\"\\\u0001é😀"], "\ufb33": {}, "\U0001f600": 2}]
    samples += [{"k": rng.choice(floats), "s": "Hồ sơ"} for _ in range(100)]
    for sample in samples:
        text = rfc8785.dumps(sample).decode()
        assert tool.is_canonical(text), text
        assert not tool.is_canonical(json.dumps(sample, ensure_ascii=False, indent=1))
    assert not tool.is_canonical('{"a":1,"a":1}')  # duplicate keys
    assert not tool.is_canonical('{"a":1.0}') and tool.is_canonical('{"a":1}')
    assert not tool.is_canonical('{"b":1,"a":2}') and not tool.is_canonical("[1]")


def test_the_tools_proof_checks_accept_every_proof_and_reject_others() -> None:
    tool = _load_tool()
    records = [record(i) for i in range(64)]
    log = asyncio.run(make_log(records))

    async def check() -> None:
        roots = [await log.root(n) for n in range(65)]
        for new in range(1, 65):
            for index in range(new):
                proof = await log.inclusion_proof(index, new)
                leaf = tool.leaf_hash(canonical_bytes(records[index]))
                assert tool.inclusion_root(index, new, leaf, proof) == roots[new]
                assert tool.inclusion_root(index, new, leaf, proof + [bytes(32)]) != roots[new]
            for old in range(1, new + 1):
                proof = await log.consistency_proof(old, new)
                assert tool.consistent(old, new, roots[old], roots[new], proof), (old, new)
                assert not tool.consistent(old, new, roots[old - 1], roots[new], proof)
                if proof:
                    assert not tool.consistent(old, new, roots[old], roots[new], proof[:-1])

    asyncio.run(check())
