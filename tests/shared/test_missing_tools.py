"""Tests that need a tool fail under CI=true when it is missing instead of vanishing as skips:
the signing tests (softhsm2, poppler, openssl) and the receipt's QR decoding (zxing-cpp)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pytest(target: str, *, ci: bool, path: str | None = None, pythonpath: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci:
        env["CI"] = "true"
    if path is not None:
        env["PATH"] = path
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", target],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    return result.stdout + result.stderr


def test_signing_tests_fail_under_ci_without_their_tools(tmp_path: Path) -> None:
    target = "tests/services/signing/test_token.py::test_private_key_is_sensitive_and_cannot_be_read"
    empty = str(tmp_path)  # a PATH where no softhsm2-util, pdfsig or openssl is found
    assert " skipped" in _pytest(target, ci=False, path=empty)
    output = _pytest(target, ci=True, path=empty)
    assert " error" in output and " skipped" not in output, output[-2000:]
    assert "softhsm2, poppler-utils and openssl are required" in output


def test_qr_decoding_fails_under_ci_without_its_decoder(tmp_path: Path) -> None:
    stub = tmp_path / "zxingcpp"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('zxing-cpp is not installed')\n")
    target = "tests/services/intake/test_forms.py::test_receipt_qr_code_decodes_to_the_lookup_url"
    assert " skipped" in _pytest(target, ci=False, pythonpath=tmp_path)
    output = _pytest(target, ci=True, pythonpath=tmp_path)
    assert " failed" in output and " skipped" not in output, output[-2000:]
    assert "no QR decoder" in output
