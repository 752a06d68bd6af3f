"""Key custody in the SoftHSM token: keys stay inside, PINs are counted, signers are locked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from pkcs11 import Attribute, ObjectClass
from pyhanko.sign.pkcs11 import PKCS11Signer

from services.signing.custody import TokenError
from services.signing.policy import TokenLocked, UnknownSigner, WrongPin

from .conftest import PIN, Pki


def _private_key(pki: Pki, signer_id: str):
    return pki.token.session.get_key(
        object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(pki.token.record(signer_id).key_id)
    )


def test_private_key_is_sensitive_and_cannot_be_read(pki: Pki) -> None:
    key = _private_key(pki, "chu-tich")
    assert key[Attribute.SENSITIVE] is True
    assert key[Attribute.EXTRACTABLE] is False
    assert key[Attribute.NEVER_EXTRACTABLE] is True
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        key[Attribute.PRIVATE_EXPONENT]
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        key[Attribute.PRIME_1]
    # and nothing of the key reached the disk outside the token store
    register = (pki.token.directory / "signers.json").read_text(encoding="utf-8")
    assert "PRIVATE" not in register.upper().replace("PRIVATE_", "")


def test_signature_made_in_the_token_verifies_with_the_certificate(pki: Pki) -> None:
    signer = pki.token.signer("chu-tich", pin=PIN)
    message = "Quyết định 15/QĐ-UBND".encode()
    signature = signer.sign_raw_sync(message)
    cert = pki.token.certificate("chu-tich")
    cert.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_one_session_is_shared_safely_by_threads(pki: Pki) -> None:
    signer = pki.token.signer("chu-tich", pin=PIN)
    cert = pki.token.certificate("chu-tich")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                data = f"{n}-{i}".encode()
                cert.public_key().verify(signer.sign_raw_sync(data), data, padding.PKCS1v15(), hashes.SHA256())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_wrong_pins_are_counted_then_the_signer_is_locked(pki: Pki) -> None:
    signer_id = pki.new_signer("pho-chu-tich", full_name="Trần Thị Mai", position="Phó Chủ tịch")
    left = []
    for _ in range(4):
        with pytest.raises(WrongPin) as info:
            pki.token.signer(signer_id, pin="000000")
        left.append(info.value.attempts_left)
    assert left == [4, 3, 2, 1]
    # a correct PIN in between resets the counter
    pki.token.signer(signer_id, pin=PIN)
    assert pki.token.record(signer_id).failed_attempts == 0
    for _ in range(4):
        with pytest.raises(WrongPin):
            pki.token.signer(signer_id, pin="000000")
    with pytest.raises(TokenLocked):
        pki.token.signer(signer_id, pin="000000")
    # locked: even the right PIN is refused, and the lock is on disk
    with pytest.raises(TokenLocked):
        pki.token.signer(signer_id, pin=PIN)
    saved = json.loads((pki.token.directory / "signers.json").read_text(encoding="utf-8"))
    assert saved[signer_id]["locked"] is True
    # the administrator sets a new PIN
    pki.token.reset_pin(signer_id, new_pin="135791")
    pki.token.signer(signer_id, pin="135791")
    with pytest.raises(WrongPin):
        pki.token.signer(signer_id, pin=PIN)


def test_unknown_signer_duplicate_key_and_short_pin(pki: Pki) -> None:
    with pytest.raises(UnknownSigner):
        pki.token.signer("khong-ton-tai", pin=PIN)
    with pytest.raises(TokenError):
        pki.token.generate_key("chu-tich", pin=PIN)
    with pytest.raises(TokenError):
        pki.token.generate_key("pin-ngan", pin="12")


def test_certificate_must_match_the_key(pki: Pki) -> None:
    other = pki.token.certificate("ubnd-tinh")
    with pytest.raises(TokenError):
        pki.token.attach_certificate("chu-tich", other, chain=pki.ca.chain())


def test_signed_attributes_are_those_pyhanko_would_make(pki: Pki) -> None:
    """The signer writes a PAdES signature's signed attributes itself: byte for byte what pyHanko's
    attribute providers give; anything else (CMS, not PAdES) is left to pyHanko."""
    signer = pki.token.signer("chu-tich", pin=PIN)
    digest = hashlib.sha256(b"van ban").digest()
    for use_pades in (True, False):
        ours = asyncio.run(signer.signed_attrs(digest, "sha256", use_pades=use_pades, timestamper=pki.timestamper))
        theirs = asyncio.run(
            PKCS11Signer.signed_attrs(signer, digest, "sha256", use_pades=use_pades, timestamper=pki.timestamper)
        )
        assert ours.dump() == theirs.dump()
