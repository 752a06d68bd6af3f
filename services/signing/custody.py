"""The register of signers every key keeper shares (the PKCS#11 token, ``token.py``, and the
development keystore, ``softkeys.py``): who may sign, with which certificate, and their PINs.

The token's user PIN unlocks every key in it, so it cannot tell signers apart. Each signer (a
person, or an organisation's seal) therefore has **its own PIN, checked here** against an Argon2
hash before the keeper is asked to sign. Wrong PINs are counted per signer; after
``PinPolicy.max_attempts`` consecutive failures (5 by default) the signer is locked until an
administrator sets a new PIN (:meth:`KeyCustody.reset_pin`). A correct PIN resets the counter.
The register (key id, PIN hash, counter, lock, certificate) is the JSON file ``signers.json``
beside the keys, so the service can persist and back it up.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pyhanko.sign.signers import Signer

from . import der
from .policy import TokenLocked, UnknownSigner, WrongPin

__all__ = ["KeyCustody", "PinPolicy", "SignerRecord", "TokenError"]


class TokenError(Exception):
    """The token cannot be set up or used (a deployment problem, not a user's mistake)."""


@dataclass(frozen=True)
class PinPolicy:
    """Per-signer PIN rules. Argon2 costs are configurable so tests can run cheaply."""

    max_attempts: int = 5
    min_length: int = 6
    # OWASP's minimum for Argon2id (19 MiB, 2 passes): ~40 ms per check here. The lock after
    # max_attempts guards the online path; the hash only slows an offline attack on the file.
    argon2_time_cost: int = 2
    argon2_memory_cost_kib: int = 19 * 1024
    argon2_parallelism: int = 1

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.argon2_time_cost,
            memory_cost=self.argon2_memory_cost_kib,
            parallelism=self.argon2_parallelism,
        )


@dataclass
class SignerRecord:
    """A signer's line in ``signers.json``."""

    signer_id: str
    key_id: str  # hex CKA_ID shared by the key pair and the certificate object
    pin_hash: str
    failed_attempts: int = 0
    locked: bool = False
    certificate_pem: str | None = None
    chain_pem: str | None = None  # intermediate(s) and root, for embedding in signatures


class KeyCustody:
    """Where the signers' keys are kept, and what every keeper does the same way: the register
    of signers (``signers.json`` in its directory), the per-signer PINs and their lock, the
    certificates. Subclasses keep the keys: :class:`SigningToken` in a PKCS#11 token,
    :class:`services.signing.softkeys.SoftwareKeystore` in encrypted files (development only)."""

    #: what /readyz and the start banner call this keeper
    description: str = ""

    def __init__(self, directory: Path, *, policy: PinPolicy) -> None:
        self.directory = directory
        self.policy = policy
        self._lock = threading.RLock()
        self._hasher = policy.hasher()
        self._register_path = directory / "signers.json"
        self._records: dict[str, SignerRecord] = {}
        if self._register_path.exists():
            raw = json.loads(self._register_path.read_text(encoding="utf-8"))
            self._records = {k: SignerRecord(**v) for k, v in raw.items()}

    # -- what a keeper of keys does ------------------------------------------------------------

    def generate_key(self, signer_id: str, *, pin: str) -> rsa.RSAPublicKey:
        """A new RSA-2048 key pair for a new signer, whose PIN is recorded; returns the public key
        for the CA to certify."""
        raise NotImplementedError

    def public_key(self, signer_id: str) -> rsa.RSAPublicKey:
        raise NotImplementedError

    def signer(self, signer_id: str, *, pin: str) -> Signer:
        """A pyHanko signer for this signer's key after checking the PIN. Reuse the returned
        object for a batch: the PIN is checked once and the key is looked up once."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def attach_certificate(
        self, signer_id: str, certificate: x509.Certificate, *, chain: list[x509.Certificate]
    ) -> None:
        """Record the signer's certificate (and the chain to embed in signatures)."""
        record = self._record(signer_id)
        if certificate.public_key() != self.public_key(signer_id):
            raise TokenError("certificate does not match the signer's key")
        self._store_certificate(record, certificate)
        record.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        record.chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain).decode()
        self._save()

    def _store_certificate(self, record: SignerRecord, certificate: x509.Certificate) -> None:
        """Where the keeper keeps a certificate beside its key, if anywhere but the register."""

    def certificate(self, signer_id: str) -> x509.Certificate:
        record = self._record(signer_id)
        if record.certificate_pem is None:
            raise TokenError(f"signer {signer_id!r} has no certificate yet")
        return x509.load_pem_x509_certificate(record.certificate_pem.encode())

    def signer_ids(self) -> list[str]:
        return sorted(self._records)

    def record(self, signer_id: str) -> SignerRecord:
        """A copy of the signer's register line (PIN hash included; never show it to users)."""
        return SignerRecord(**asdict(self._record(signer_id)))

    def _new_record(self, signer_id: str, key_id: str, pin: str) -> None:
        self._records[signer_id] = SignerRecord(signer_id=signer_id, key_id=key_id, pin_hash=self._hasher.hash(pin))
        self._save()

    def _certified(self, signer_id: str) -> tuple[SignerRecord, asn1_x509.Certificate, list[asn1_x509.Certificate]]:
        record = self._record(signer_id)
        if record.certificate_pem is None or record.chain_pem is None:
            raise TokenError(f"signer {signer_id!r} has no certificate yet")
        cert = der.to_asn1(x509.load_pem_x509_certificate(record.certificate_pem.encode()))
        chain = [der.to_asn1(c) for c in x509.load_pem_x509_certificates(record.chain_pem.encode())]
        return record, cert, chain

    # -- PINs ------------------------------------------------------------------------------

    def verify_pin(self, signer_id: str, pin: str) -> None:
        """Check a signer's PIN, counting failures; raises :class:`WrongPin` or
        :class:`TokenLocked`."""
        with self._lock:
            record = self._record(signer_id)
            if record.locked:
                raise TokenLocked(f"signer {signer_id!r} is locked after too many wrong PINs")
            try:
                self._hasher.verify(record.pin_hash, pin)
            except (VerificationError, InvalidHashError):
                record.failed_attempts += 1
                left = self.policy.max_attempts - record.failed_attempts
                if left <= 0:
                    record.locked = True
                    self._save()
                    raise TokenLocked(
                        f"signer {signer_id!r} is now locked after {record.failed_attempts} wrong PINs"
                    ) from None
                self._save()
                raise WrongPin(f"wrong PIN, {left} attempt(s) left", attempts_left=left) from None
            if record.failed_attempts:
                record.failed_attempts = 0
                self._save()

    def change_pin(self, signer_id: str, *, old_pin: str, new_pin: str) -> None:
        self.verify_pin(signer_id, old_pin)
        self._check_pin_shape(new_pin)
        with self._lock:
            self._record(signer_id).pin_hash = self._hasher.hash(new_pin)
            self._save()

    def reset_pin(self, signer_id: str, *, new_pin: str) -> None:
        """Administrator's reset: a new PIN, counter cleared, lock lifted."""
        self._check_pin_shape(new_pin)
        with self._lock:
            record = self._record(signer_id)
            record.pin_hash = self._hasher.hash(new_pin)
            record.failed_attempts = 0
            record.locked = False
            self._save()

    # -- internals -------------------------------------------------------------------------

    def _record(self, signer_id: str) -> SignerRecord:
        try:
            return self._records[signer_id]
        except KeyError:
            raise UnknownSigner(f"no signer {signer_id!r} here") from None

    def _check_pin_shape(self, pin: str) -> None:
        if len(pin) < self.policy.min_length:
            raise TokenError(f"a PIN needs at least {self.policy.min_length} characters")

    def _save(self) -> None:
        with self._lock:
            tmp = self._register_path.with_suffix(".json.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(
                    {k: asdict(v) for k, v in self._records.items()},
                    fh,
                    ensure_ascii=False,
                    indent=1,
                )
            tmp.replace(self._register_path)
