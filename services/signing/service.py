"""What the signing endpoints do, apart from HTTP: issue and revoke certificates (with their
keys made in the token), pick the certificate a caller may sign with, sign, and record events.

Everything that touches the token or parses a PDF runs in a worker thread: the library is
synchronous, and the token serialises its own session.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.sign.signers import Signer
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import clock
from shared.auth import Caller
from shared.errors import Conflict, Forbidden, NotFound, ProblemError, Unprocessable
from shared.events import Actor

from .custody import TokenError
from .events import CertificateIssued, CertificateRevoked, SignatureCompleted, SignatureFailed
from .keystore import Keystore
from .models import Certificate, Signature, outbox
from .pki.register import PkiError, RevocationReason
from .policy import CertificateExpired, SealNotOfYourAgency, SigningRefused, TokenLocked, WrongPin
from .policy import CertificateRevoked as CertificateRevokedError


class SigningProblem(ProblemError):
    """A refusal from the signing library, as problem+json with the library's status and code."""

    def __init__(self, exc: SigningRefused) -> None:
        extra: dict[str, Any] = {}
        if isinstance(exc, WrongPin):
            extra["attempts_left"] = exc.attempts_left
        super().__init__(str(exc), **extra)
        self.status = exc.status  # type: ignore[misc]
        self.code = exc.code.replace("-", "_")  # type: ignore[misc]
        self.title = type(exc).__name__  # type: ignore[misc]
        self.refusal = exc


def problem_of(exc: SigningRefused) -> SigningProblem:
    return SigningProblem(exc)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- certificates ---------------------------------------------------------------------------------


@dataclass
class NewCertificate:
    row: Certificate
    pin: str | None  # only when generated here


def new_pin() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(8))


async def issue_certificate(
    session: AsyncSession,
    keystore: Keystore,
    *,
    kind: str,
    agency: str,
    agency_name: str,
    issued_by: str,
    actor: Actor,
    user_id: str | None = None,
    full_name: str | None = None,
    position: str | None = None,
    pin: str | None = None,
) -> NewCertificate:
    """Generate the key in the token, have the CA certify it, store it beside the key, record it
    and emit ``certificate.issued`` in the caller's transaction."""
    generated = pin is None
    pin = pin or new_pin()
    signer_id = f"{kind}-{uuid.uuid4().hex}"

    def make() -> Any:
        public_key = keystore.token.generate_key(signer_id, pin=pin)
        if kind == "person":
            assert full_name and position
            cert = keystore.ca.issue_person_certificate(
                public_key, full_name=full_name, position=position, organisation_name=agency_name, organ_id=agency
            )
        else:
            cert = keystore.ca.issue_organisation_certificate(
                public_key, organisation_name=agency_name, organ_id=agency
            )
        keystore.token.attach_certificate(signer_id, cert, chain=keystore.ca.chain())
        return cert

    try:
        cert = await asyncio.to_thread(make)
    except (PkiError, TokenError) as exc:
        raise Unprocessable(str(exc)) from exc
    now = clock.now()
    row = Certificate(
        serial=format(cert.serial_number, "x"),
        kind=kind,
        signer_id=signer_id,
        owner=user_id if kind == "person" else None,
        full_name=full_name,
        position=position,
        subject=cert.subject.rfc4514_string(),
        agency=agency,
        agency_name=agency_name,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issued_at=now,
        issued_by=issued_by,
    )
    session.add(row)
    await session.flush()
    await outbox.emit(
        session,
        "certificate.issued",
        CertificateIssued(
            serial=row.serial,
            kind=kind,
            agency=agency,
            owner=row.owner,
            subject=row.subject,
            not_before=row.not_before,
            not_after=row.not_after,
            issued_by=issued_by,
            actor=actor,
        ),
        subject=f"certificate:{row.serial}",
        agency=agency,
    )
    return NewCertificate(row=row, pin=pin if generated else None)


async def certificate_by_serial(session: AsyncSession, serial: str) -> Certificate:
    row = (await session.execute(select(Certificate).where(Certificate.serial == serial.lower()))).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no certificate {serial}")
    return row


async def revoke_certificate(
    session: AsyncSession, keystore: Keystore, row: Certificate, *, reason: str, caller: Caller
) -> Certificate:
    revoked_by = caller.sub
    if row.revoked_at is not None:
        raise Conflict(f"certificate {row.serial} was revoked at {row.revoked_at.isoformat()}")
    revocation = await asyncio.to_thread(keystore.revoke, int(row.serial, 16), reason=RevocationReason(reason))
    row.revoked_at = datetime.fromisoformat(revocation.revoked_at)
    row.revocation_reason = revocation.reason
    row.revoked_by = revoked_by
    await session.flush()
    await outbox.emit(
        session,
        "certificate.revoked",
        CertificateRevoked(
            serial=row.serial,
            kind=row.kind,
            agency=row.agency,
            owner=row.owner,
            reason=revocation.reason,
            revoked_at=row.revoked_at,
            revoked_by=revoked_by,
            actor=Actor.of(caller),
        ),
        subject=f"certificate:{row.serial}",
        agency=row.agency,
    )
    return row


# -- who signs with what ----------------------------------------------------------------------


async def certificate_for(session: AsyncSession, caller: Caller, *, kind: str, serial: str | None) -> Certificate:
    """The certificate ``caller`` signs ``kind`` with: a person signs with their own (the latest
    usable one unless ``serial`` names it), a clerk with the seal of their own agency."""
    if kind == "person":
        if not caller.has_any("leader"):
            raise Forbidden("a person's signature needs the role leader")
        if serial:
            row = await certificate_by_serial(session, serial)
            if row.kind != "person" or row.owner != caller.sub:
                raise Forbidden("this certificate is not yours")
            return row
        rows = await _newest_first(session, Certificate.kind == "person", Certificate.owner == caller.sub)
    else:
        if not caller.has_any("clerk"):
            raise Forbidden("the organisation's signature needs the role clerk")
        if serial:
            row = await certificate_by_serial(session, serial)
            if row.kind != "organisation":
                raise Forbidden("this certificate is not a seal")
            if row.agency != caller.agency:
                raise SigningProblem(
                    SealNotOfYourAgency(f"the seal belongs to agency {row.agency}, not to {caller.agency}")
                )
            return row
        rows = await _newest_first(session, Certificate.kind == "organisation", Certificate.agency == caller.agency)
    if not rows:
        raise NotFound("no certificate to sign with: ask an administrator to issue one")
    return next((r for r in rows if r.revoked_at is None), rows[0])


async def _newest_first(session: AsyncSession, *where: Any) -> Sequence[Certificate]:
    query = select(Certificate).where(*where).order_by(Certificate.id.desc())
    return (await session.execute(query)).scalars().all()


class PinCache:
    """Signers unlocked recently, so a run of signatures does not pay for an Argon2 check (and a
    key look-up) each time — like a smart card that stays unlocked for a while. Only a correct PIN
    enters; a lock, a PIN reset or a revocation clears the signer at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._salt = os.urandom(16)
        self._entries: dict[str, tuple[bytes, float, Signer]] = {}
        self._lock = threading.Lock()

    def _tag(self, pin: str) -> bytes:
        return hmac.new(self._salt, pin.encode(), hashlib.sha256).digest()

    def signer(self, keystore: Keystore, signer_id: str, pin: str) -> Signer:
        tag = self._tag(pin)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(signer_id)
        if hit and hmac.compare_digest(hit[0], tag) and now < hit[1] and not keystore.token.record(signer_id).locked:
            return hit[2]
        signer = keystore.token.signer(signer_id, pin=pin)
        if self.seconds > 0:
            with self._lock:
                self._entries[signer_id] = (tag, now + self.seconds, signer)
        return signer

    def forget(self, signer_id: str) -> None:
        with self._lock:
            self._entries.pop(signer_id, None)


def check_usable(keystore: Keystore, row: Certificate, *, at: datetime) -> None:
    """Refuse a revoked certificate from our own register (exact and immediate, unlike a CRL)."""
    if row.revoked_at is not None or keystore.ca.revocation_of(int(row.serial, 16)) is not None:
        raise SigningProblem(CertificateRevokedError(f"certificate {row.serial} is revoked"))
    if at > row.not_after or at < row.not_before:
        raise SigningProblem(CertificateExpired(f"certificate {row.serial} is not valid now"))


def sign_options(keystore: Keystore, *, kind: str, level: str, caller: Caller, number: str | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "level": level,
        "timestamper": keystore.timestamper,
        # B-LT needs the validation context to embed revocation data; B-T relies on the
        # register check above (the CA is ours, its register is the truth)
        "trust": keystore.trust if level == "B-LT" else None,
        "acting_organ_id": caller.agency if kind in ("organisation", "attachment") else None,
        "number_text": number,
        "policy": keystore.policy,
    }


async def record_signature(
    session: AsyncSession,
    *,
    row: Certificate,
    kind: str,
    level: str,
    caller: Caller,
    input_sha: str,
    input_bytes: int,
    output: bytes,
    signed_at: datetime,
    batch_id: str | None = None,
) -> Signature:
    values = _signature_values(
        row=row,
        kind=kind,
        level=level,
        caller=caller,
        input_sha=input_sha,
        input_bytes=input_bytes,
        output=output,
        signed_at=signed_at,
        batch_id=batch_id,
    )
    signature = Signature(**values)
    session.add(signature)
    await _emit_completed(session, [values], actor=Actor.of(caller))
    return signature


async def record_signatures(
    session: AsyncSession,
    *,
    row: Certificate,
    kind: str,
    level: str,
    caller: Caller,
    documents: Sequence[tuple[bytes, bytes]],
    signed_at: datetime,
    batch_id: str,
) -> list[SignatureCompleted]:
    """A batch's signatures (``documents``: each input with its signed output): their rows in one
    INSERT — the ORM would send one per row, to read back each id — and an event for each."""
    rows = [
        _signature_values(
            row=row,
            kind=kind,
            level=level,
            caller=caller,
            input_sha=sha256_hex(original),
            input_bytes=len(original),
            output=output,
            signed_at=signed_at,
            batch_id=batch_id,
        )
        for original, output in documents
    ]
    if rows:
        await session.execute(insert(Signature), rows)
    return await _emit_completed(session, rows, actor=Actor.of(caller))


def _signature_values(
    *,
    row: Certificate,
    kind: str,
    level: str,
    caller: Caller,
    input_sha: str,
    input_bytes: int,
    output: bytes,
    signed_at: datetime,
    batch_id: str | None,
) -> dict[str, Any]:
    return {
        "certificate_serial": row.serial,
        "kind": kind,
        "level": level,
        "signer": caller.sub,
        "agency": row.agency,
        "input_sha256": input_sha,
        "output_sha256": sha256_hex(output),
        "input_bytes": input_bytes,
        "output_bytes": len(output),
        "batch_id": batch_id,
        "signed_at": signed_at,
    }


async def _emit_completed(
    session: AsyncSession, rows: Sequence[dict[str, Any]], *, actor: Actor
) -> list[SignatureCompleted]:
    """``signature.completed`` for each signature's row (as :func:`_signature_values` gives it),
    emitted together: a batch's hundred events cost one counter statement and one insert."""
    fields = [name for name in SignatureCompleted.model_fields if name != "actor"]  # the actor is not a column
    events = [SignatureCompleted(actor=actor, **{name: values[name] for name in fields}) for values in rows]
    await outbox.emit_many(
        session,
        "signature.completed",
        [(event, f"certificate:{event.certificate_serial}", event.agency) for event in events],
    )
    return events


async def record_failure(
    session: AsyncSession,
    *,
    kind: str,
    caller: Caller,
    row: Certificate | None,
    input_sha: str | None,
    problem: ProblemError,
    batch_id: str | None = None,
    alone: bool = True,
) -> None:
    """``signature.failed``. ``alone``: the request is being refused, so whatever it wrote is
    rolled back first and the event is committed on its own (the request's rollback that follows
    finds nothing left to undo)."""
    # read before the rollback, which expires the row
    agency, serial = (row.agency, row.serial) if row else (caller.agency, None)
    if alone:
        await session.rollback()
    await outbox.emit(
        session,
        "signature.failed",
        SignatureFailed(
            kind=kind,
            signer=caller.sub,
            agency=agency,
            certificate_serial=serial,
            input_sha256=input_sha,
            code=problem.code,
            status=problem.status,
            at=clock.now(),
            batch_id=batch_id,
            actor=Actor.of(caller),
        ),
        subject=f"certificate:{serial}" if serial else f"signer:{caller.sub}",
        agency=agency,
    )
    if alone:
        await session.commit()


def locked(keystore: Keystore, row: Certificate) -> bool | None:
    try:
        return keystore.token.record(row.signer_id).locked
    except SigningRefused:
        return None


def certificate_pem(keystore: Keystore, row: Certificate) -> str | None:
    try:
        return keystore.token.certificate(row.signer_id).public_bytes(Encoding.PEM).decode()
    except (SigningRefused, TokenError):
        return None


__all__ = [
    "PinCache",
    "SigningProblem",
    "TokenLocked",
    "certificate_for",
    "issue_certificate",
    "record_failure",
    "record_signature",
    "record_signatures",
    "revoke_certificate",
]
