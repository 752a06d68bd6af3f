"""The checkpoint key: configured in production (refused when missing), generated once in development."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.audit.checkpoint import generate_signer_key, parse_and_verify, sign_checkpoint
from services.audit.config import get_settings
from services.audit.store import load_signer


def test_production_refuses_to_start_without_a_signing_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="signing_key"):
        get_settings(environment="production", var_dir=tmp_path)
    skey, vkey = generate_signer_key("audit.tinh.gov.vn/log")
    signer = load_signer(get_settings(environment="production", var_dir=tmp_path, signing_key=skey))
    assert signer.name == "audit.tinh.gov.vn/log" and signer.verifier_key == vkey
    assert not list(tmp_path.iterdir())  # nothing generated on disk in production


def test_development_generates_one_private_key_and_keeps_it(tmp_path: Path) -> None:
    first = load_signer(get_settings(environment="development", var_dir=tmp_path))
    again = load_signer(get_settings(environment="development", var_dir=tmp_path))
    key_file = tmp_path / "audit-signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.verifier_key == again.verifier_key and first.name == "audit.lienthong.local/log"
    note = sign_checkpoint(signer=first, origin=first.name, size=3, root=bytes(32))
    assert parse_and_verify(note, again.verifier_key).size == 3
