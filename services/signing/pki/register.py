"""The CA's register (state.json): every certificate it issued, its revocation if any, and the
numbers of the CRLs it published."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from cryptography import x509

__all__ = [
    "CertificateKind",
    "IssuedCertificate",
    "PkiError",
    "Register",
    "Revocation",
    "RevocationReason",
    "UnknownCertificate",
    "register_line",
]

RevocationReason = x509.ReasonFlags


class PkiError(Exception):
    """A CA operation that cannot be carried out."""


class UnknownCertificate(PkiError):
    """No certificate with this serial number was issued by this CA."""


class CertificateKind:
    PERSON = "person"
    ORGANISATION = "organisation"
    TSA = "tsa"
    INTERMEDIATE = "intermediate"


@dataclass
class Revocation:
    reason: str  # a ``x509.ReasonFlags`` value, e.g. "keyCompromise"
    revoked_at: str  # ISO 8601


@dataclass
class IssuedCertificate:
    """One line of the CA's register of issued certificates."""

    serial: int
    kind: str
    subject: str
    not_before: str
    not_after: str
    issuer: str  # "root" or "intermediate"
    revocation: Revocation | None = None


@dataclass
class Register:
    issued: dict[str, IssuedCertificate] = field(default_factory=dict)  # key: serial in hex
    crl_numbers: dict[str, int] = field(default_factory=lambda: {"root": 0, "intermediate": 0})

    def to_json(self) -> str:
        return json.dumps(
            {
                "issued": {k: asdict(v) for k, v in self.issued.items()},
                "crl_numbers": self.crl_numbers,
            },
            ensure_ascii=False,
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Register:
        raw = json.loads(text)
        issued = {}
        for key, value in raw["issued"].items():
            rev = value.pop("revocation")
            issued[key] = IssuedCertificate(**value, revocation=Revocation(**rev) if rev else None)
        return cls(issued=issued, crl_numbers=raw["crl_numbers"])


def register_line(cert: x509.Certificate, kind: str, issuer: str) -> IssuedCertificate:
    return IssuedCertificate(
        serial=cert.serial_number,
        kind=kind,
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        issuer=issuer,
    )
