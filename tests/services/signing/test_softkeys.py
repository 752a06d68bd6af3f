"""Signing on a machine without SoftHSM2 (issue #12 item 5): in development and demo the keys
live in a software keystore (encrypted PKCS#8 files) behind the token's interface, signatures
made with them validate in pyHanko, pdfsig and openssl exactly like the token's, /readyz flags
it; production refuses to start without its token. The machine has SoftHSM2 installed, so its
absence is simulated: a module path that does not exist and a PATH without softhsm2-util."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from services.signing.app import create_app
from services.signing.drafts import fill_number_field, prepare_draft
from services.signing.keystore import Keystore, RefusedToStart, close_keystore, custody_kind, open_keystore
from services.signing.pades import sign_batch, sign_pdf
from services.signing.pki.authority import certificates_pem
from services.signing.policy import TokenLocked, WrongPin
from services.signing.softkeys import SOFTWARE_KEYSTORE, SoftwareKeystore
from services.signing.verification import verify_pdf
from tests.suites import embedded

from .checkers import openssl_verify_signatures, pdfsig, pyhanko_validate
from .conftest import AGENCY, AGENCY_ID, PIN, decision_pdf, signing_settings_for

ROOT = Path(__file__).resolve().parents[3]
NO_MODULE = "/nonexistent/softhsm/libsofthsm2.so"
NUMBER = "07/QĐ-UBND"
DEMO_PIN = "975310"
PDF = {"Content-Type": "application/pdf"}


@pytest.fixture
def no_softhsm_util(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH where softhsm2-util cannot be found."""
    empty = tmp_path / "bin-without-softhsm"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@dataclass
class Soft:
    directory: Path
    keystore: Keystore
    root_pem: Path
    intermediate_pem: Path

    def new_signer(self, signer_id: str, *, person: bool = True) -> str:
        ca, keys = self.keystore.ca, self.keystore.token
        public_key = keys.generate_key(signer_id, pin=PIN)
        if person:
            cert = ca.issue_person_certificate(
                public_key,
                full_name="Nguyễn Văn Mềm",
                position="Chủ tịch",
                organisation_name=AGENCY,
                organ_id=AGENCY_ID,
            )
        else:
            cert = ca.issue_organisation_certificate(public_key, organisation_name=AGENCY, organ_id=AGENCY_ID)
        keys.attach_certificate(signer_id, cert, chain=ca.chain())
        return signer_id


@pytest.fixture(scope="module")
def soft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Soft]:
    base = tmp_path_factory.mktemp("software-keystore")
    keystore = open_keystore(signing_settings_for(base, token_module=NO_MODULE))
    root_pem, intermediate_pem = base / "root.pem", base / "interm.pem"
    root_pem.write_bytes(certificates_pem([keystore.ca.root_certificate]))
    intermediate_pem.write_bytes(certificates_pem([keystore.ca.intermediate_certificate]))
    env = Soft(base, keystore, root_pem, intermediate_pem)
    env.new_signer("chu-tich-mem")
    env.new_signer("con-dau-mem", person=False)
    yield env
    close_keystore(keystore)


# -- which keeper ---------------------------------------------------------------------------------


def test_without_a_module_development_takes_the_software_keystore(tmp_path: Path) -> None:
    assert custody_kind(signing_settings_for(tmp_path, token_module=NO_MODULE)) == "software"
    assert custody_kind(signing_settings_for(tmp_path, token_module=NO_MODULE, demo=True)) == "software"


@pytest.mark.usefixtures("no_softhsm_util")
def test_a_module_without_softhsm2_util_cannot_create_a_token_so_software_it_is(tmp_path: Path) -> None:
    module = tmp_path / "libsofthsm2.so"
    module.write_bytes(b"\x7fELF")  # present, but no tool to initialise a token with
    assert custody_kind(signing_settings_for(tmp_path, token_module=str(module))) == "software"
    # a token made earlier needs no tool to be opened
    (tmp_path / "token" / "tokens" / "abc").mkdir(parents=True)
    assert custody_kind(signing_settings_for(tmp_path, token_module=str(module))) == "token"


def test_with_softhsm2_installed_the_token_is_kept(tmp_path: Path) -> None:
    if not (Path("/usr/lib/softhsm/libsofthsm2.so").is_file() and shutil.which("softhsm2-util")):
        pytest.skip("SoftHSM2 is not installed here")
    assert custody_kind(signing_settings_for(tmp_path)) == "token"
    # but keys already made in software stay where the certificates expect them
    (tmp_path / "software").mkdir()
    (tmp_path / "software" / "signers.json").write_text("{}", encoding="utf-8")
    assert custody_kind(signing_settings_for(tmp_path)) == "software"


def test_production_never_takes_software_keys(tmp_path: Path) -> None:
    secrets = {
        "token_pin_secret": "a-real-pin-8642",
        "token_so_pin_secret": "another-one-9753",
        "ca_passphrase_secret": "long passphrase here",
        "ca_create": False,
        "token_create": False,
    }
    production = signing_settings_for(tmp_path, environment="production", token_module=NO_MODULE, **secrets)
    assert custody_kind(production) == "token"
    with pytest.raises(ValueError, match="keystore=software is refused"):
        signing_settings_for(tmp_path, environment="production", keystore="software", **secrets)


# -- the keys on disk -----------------------------------------------------------------------------


def test_keys_are_encrypted_pkcs8_files_readable_only_by_the_owner(soft: Soft) -> None:
    keys = soft.keystore.token
    assert isinstance(keys, SoftwareKeystore) and keys.description == SOFTWARE_KEYSTORE
    files = sorted((soft.directory / "software" / "keys").iterdir())
    assert len(files) == 2
    for path in files:
        data = path.read_bytes()
        assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(TypeError):  # no password, no key
            serialization.load_pem_private_key(data, password=None)
        with pytest.raises(ValueError):
            serialization.load_pem_private_key(data, password=b"not-the-secret")
    # the key is the certified one
    cert = keys.certificate("chu-tich-mem")
    record = keys.record("chu-tich-mem")
    key = serialization.load_pem_private_key(
        (soft.directory / "software" / "keys" / f"{record.key_id}.p8").read_bytes(),
        password=soft.keystore.settings.token_pin_secret.encode(),
    )
    assert key.public_key() == cert.public_key()
    register = (soft.directory / "software" / "signers.json").read_text(encoding="utf-8")
    assert "PRIVATE KEY" not in register


def test_pins_are_counted_and_lock_the_signer_like_the_token(soft: Soft) -> None:
    keys = soft.keystore.token
    signer_id = soft.new_signer("pho-chu-tich-mem")
    with pytest.raises(WrongPin) as wrong:
        keys.signer(signer_id, pin="000000")
    assert wrong.value.attempts_left == 4
    keys.signer(signer_id, pin=PIN)  # a correct PIN resets the count
    assert keys.record(signer_id).failed_attempts == 0
    for _ in range(4):
        with pytest.raises(WrongPin):
            keys.signer(signer_id, pin="111111")
    with pytest.raises(TokenLocked):
        keys.signer(signer_id, pin="111111")
    with pytest.raises(TokenLocked):  # even the right PIN, once locked
        keys.signer(signer_id, pin=PIN)
    keys.reset_pin(signer_id, new_pin="8642013")
    keys.signer(signer_id, pin="8642013")


# -- signatures made with software keys -----------------------------------------------------------


@pytest.fixture(scope="module")
def sealed(soft: Soft, tmp_path_factory: pytest.TempPathFactory) -> Path:
    keystore = soft.keystore
    person = sign_pdf(
        prepare_draft(decision_pdf()),
        signer=keystore.token.signer("chu-tich-mem", pin=PIN),
        kind="person",
        timestamper=keystore.timestamper,
        trust=keystore.trust,
    )
    numbered = fill_number_field(person, number_text=NUMBER)
    sealed = sign_pdf(
        numbered,
        signer=keystore.token.signer("con-dau-mem", pin=PIN),
        kind="organisation",
        timestamper=keystore.timestamper,
        trust=keystore.trust,
        acting_organ_id=AGENCY_ID,
        level="B-LT",
    )
    path = tmp_path_factory.mktemp("software-signed") / "quyet-dinh.pdf"
    path.write_bytes(sealed)
    return path


def test_software_signatures_valid_for_pyhanko_cli(soft: Soft, sealed: Path) -> None:
    result = pyhanko_validate(
        sealed, root=soft.root_pem, intermediate=soft.intermediate_pem, extra=("--no-revocation-check",)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("chu_ky")]
    assert len(lines) == 2 and all(":INTACT:TRUSTED" in line for line in lines), result.stdout


def test_software_signatures_valid_for_pdfsig(sealed: Path) -> None:
    report = pdfsig(sealed)
    assert report.count("Signature Validation: Signature is Valid.") == 2, report
    assert "Signer Certificate Common Name: Nguyễn Văn Mềm" in report


def test_software_signatures_valid_for_openssl_cms(soft: Soft, sealed: Path, tmp_path: Path) -> None:
    checks = openssl_verify_signatures(sealed.read_bytes(), ca_file=soft.root_pem, workdir=tmp_path)
    assert len(checks) == 2 and all(c.ok for c in checks), [c.output for c in checks]


def test_a_batch_signed_with_software_keys_verifies(soft: Soft) -> None:
    keystore = soft.keystore
    result = sign_batch(
        [decision_pdf(body=f"Văn bản số {i}.") for i in range(5)],
        signer=keystore.token.signer("chu-tich-mem", pin=PIN),
        kind="person",
        timestamper=keystore.timestamper,
    )
    assert result.signed == 5
    for item in result.items:
        assert item.pdf is not None and verify_pdf(item.pdf, trust=keystore.trust).all_ok


# -- the suite without SoftHSM2, and production ---------------------------------------------------


@pytest.mark.usefixtures("no_softhsm_util")
async def test_the_suite_runs_without_softhsm2_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = {
        "token_module": NO_MODULE,
        "ca_key_size": 2048,
        "pin_argon2_time_cost": 1,
        "pin_argon2_memory_kib": 1024,
        "demo_pin_secret": DEMO_PIN,
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 8192,
        "password_hash_parallelism": 1,
    }
    async with embedded(tmp_path, **extra) as running:
        async with httpx.AsyncClient(timeout=10) as direct:
            ready = (await direct.get(f"http://127.0.0.1:{running.ports['signing']}/readyz")).json()
        assert ready["status"] == "ok" and ready["checks"]["keystore"] == SOFTWARE_KEYSTORE
        async with running.client() as client:
            leader, clerk = await running.auth("leader"), await running.auth("clerk")
            signed = await client.post(
                "/api/signing/sign", content=decision_pdf(), headers={**leader, **PDF, "X-Signing-PIN": DEMO_PIN}
            )
            assert signed.status_code == 200, signed.text
            wrong = await client.post(
                "/api/signing/sign", content=decision_pdf(), headers={**leader, **PDF, "X-Signing-PIN": "000000"}
            )
            assert wrong.status_code == 403 and wrong.json()["extra"]["attempts_left"] == 4, wrong.text
            report = (await client.post("/api/signing/verify", content=signed.content, headers={**clerk, **PDF})).json()
            assert report["all_ok"] and report["signatures"][0]["signer_name"] == "Phạm Văn Đức"
    assert (tmp_path / "signing" / "software" / "signers.json").exists()
    assert not (tmp_path / "signing" / "token").exists()
    warning = [line for line in capsys.readouterr().err.splitlines() if "SOFTWARE KEYSTORE" in line]
    assert len(warning) == 1 and "warning" in warning[0].lower(), warning


def test_asking_for_a_token_without_its_module_refuses_to_start_before_serving(tmp_path: Path) -> None:
    settings = signing_settings_for(tmp_path, token_module=NO_MODULE, keystore="token")
    with pytest.raises(RefusedToStart, match="keystore=token keeps signing keys in a PKCS#11 token") as refused:
        create_app(settings)
    # SystemExit's code is what the interpreter prints, alone, before exiting 1
    assert str(refused.value.code).startswith("signing refuses to start: keystore=token") and NO_MODULE in str(
        refused.value.code
    )
    assert not (tmp_path / "ca").exists() and not (tmp_path / "software").exists()  # nothing made


def test_production_without_a_token_module_refuses_to_start_with_one_clear_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": str(tmp_path),  # no softhsm2-util either
        "LIENTHONG_ENVIRONMENT": "production",
        "LIENTHONG_VAR_DIR": str(tmp_path),
        "LIENTHONG_SIGNING_TOKEN_MODULE": NO_MODULE,
        "LIENTHONG_SIGNING_TOKEN_PIN_SECRET": "a-real-pin-8642",
        "LIENTHONG_SIGNING_TOKEN_SO_PIN_SECRET": "another-one-9753",
        "LIENTHONG_SIGNING_CA_PASSPHRASE_SECRET": "long passphrase here",
        "LIENTHONG_SIGNING_CA_CREATE": "false",
        "LIENTHONG_SIGNING_TOKEN_CREATE": "false",
        "LIENTHONG_SIGNING_PORT": "0",
    }
    env.pop("LIENTHONG_DEMO", None)
    result = subprocess.run(
        [sys.executable, "-m", "lienthong", "serve", "signing"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("signing refuses to start: production keeps signing keys in a PKCS#11 token")
    assert NO_MODULE in lines[-1] and "LIENTHONG_SIGNING_TOKEN_MODULE" in lines[-1]
