"""Independent checkers for signed PDFs, run as separate processes: the pyHanko CLI, poppler's
pdfsig and OpenSSL's CMS verifier. None of them shares code with services/signing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PYHANKO = str(Path(sys.executable).with_name("pyhanko"))
_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


def _der_length(der: bytes) -> int:
    """Length of the DER value at the start of ``der`` (the rest is the zero padding)."""
    first = der[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    return 2 + n + int.from_bytes(der[2 : 2 + n], "big")


def pyhanko_validate(
    pdf: Path, *, root: Path, intermediate: Path, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``pyhanko sign validate``: one line per field, ``…:INTACT:TRUSTED,…`` or ``…:INVALID``."""
    if not Path(PYHANKO).exists():
        message = "the pyHanko CLI is missing: install pyhanko-cli (>=0.1.2,<0.2) in the venv"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        [
            PYHANKO,
            "sign",
            "validate",
            "--trust",
            str(root),
            "--trust-replace",
            "--other-certs",
            str(intermediate),
            *extra,
            str(pdf),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def pdfsig(pdf: Path) -> str:
    """poppler's pdfsig report; it exits 0 even for a broken signature, so callers read it."""
    result = subprocess.run(["pdfsig", str(pdf)], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


@dataclass
class CmsCheck:
    ok: bool
    output: str


def openssl_verify_signatures(pdf: bytes, *, ca_file: Path, workdir: Path) -> list[CmsCheck]:
    """For every /ByteRange in the file: cut the signed bytes and the /Contents hex out with a
    regular expression (no PDF library), then ``openssl cms -verify`` them."""
    checks = []
    for i, match in enumerate(_BYTE_RANGE.finditer(pdf)):
        a, b, c, d = (int(x) for x in match.groups())
        padded = bytes.fromhex(pdf[a + b + 1 : c - 1].decode())
        sig = workdir / f"sig{i}.der"
        data = workdir / f"signed{i}.bin"
        sig.write_bytes(padded[: _der_length(padded)])
        data.write_bytes(pdf[a : a + b] + pdf[c : c + d])
        result = subprocess.run(
            [
                "openssl",
                "cms",
                "-verify",
                "-inform",
                "DER",
                "-in",
                str(sig),
                "-binary",
                "-content",
                str(data),
                "-CAfile",
                str(ca_file),
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        checks.append(CmsCheck(result.returncode == 0, result.stdout + result.stderr))
    return checks
