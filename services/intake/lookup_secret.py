"""The look-up secret a receipt prints: its hash for the public look-up, sealed so that the same
secret can be printed again, and rotated by the desk on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.config import IntakeSettings
from services.intake.context import Context
from services.intake.dossiers import note, touch
from services.intake.models import Dossier
from shared import clock
from shared.auth import Caller
from shared.errors import Forbidden, Unprocessable


def lookup_hash(settings: IntakeSettings, code: str, secret: str) -> str:
    """HMAC of the look-up secret, bound to the code (a leaked table gives nothing to replay)."""
    return hmac.new(settings.lookup_hash_secret.encode(), f"{code}\n{secret}".encode(), hashlib.sha256).hexdigest()


# Unambiguous letters and digits (no 0/O, 1/I/L): read off paper and typed by hand.
_SECRET_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_lookup_secret() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(10))


def _sealing_key(settings: IntakeSettings) -> bytes:
    label = b"lienthong intake: receipt secret sealing"
    return hmac.new(settings.lookup_hash_secret.encode(), label, hashlib.sha256).digest()


def seal_secret(settings: IntakeSettings, code: str, secret: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key(settings)).encrypt(nonce, secret.encode(), code.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def open_secret(settings: IntakeSettings, code: str, sealed: str) -> str | None:
    """The printed secret, or None when it cannot be read back (another key since)."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return AESGCM(_sealing_key(settings)).decrypt(raw[:12], raw[12:], code.encode()).decode()
    except (ValueError, InvalidTag):
        return None


async def receipt_secret(
    session: AsyncSession, ctx: Context, caller: Caller, dossier: Dossier, *, rotate: bool, reason: str | None
) -> str:
    """The look-up secret a receipt (form 01) prints. Printing again shows the same secret, so
    the paper receipt already handed out keeps working; a new secret only when the desk rotates
    it on purpose, with its reason in the history (e.g. the receipt was lost or seen by others)."""
    if rotate:
        if not caller.has_any("desk_officer") or not caller.acts_in(dossier.agency):
            raise Forbidden("only the desk rotates a look-up secret")
        if not reason or not reason.strip():
            raise Unprocessable("rotating the look-up secret needs a reason", field="reason")
    elif reason is not None:
        raise Unprocessable("reason goes with rotate_secret=true", field="reason")
    settings = ctx.settings
    kept = None
    if dossier.lookup_hash and dossier.lookup_secret_sealed and not rotate:
        kept = open_secret(settings, dossier.code, dossier.lookup_secret_sealed)
        if kept is not None and not hmac.compare_digest(lookup_hash(settings, dossier.code, kept), dossier.lookup_hash):
            kept = None
    if kept is not None:
        return kept
    had_one = dossier.lookup_hash is not None
    secret = new_lookup_secret()
    dossier.lookup_hash = lookup_hash(settings, dossier.code, secret)
    dossier.lookup_secret_sealed = seal_secret(settings, dossier.code, secret)
    if had_one:
        why = reason.strip() if rotate and reason else "the earlier secret could not be printed again"
        note(session, dossier, caller, "rotate_lookup_secret", at=clock.now(), details={"reason": why})
    touch(dossier)
    await session.flush()
    return secret
