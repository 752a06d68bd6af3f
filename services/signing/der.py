"""DER by hand for the two structures made once per signature — the TSA's time-stamp token and
the signature's CMS ``SignedData`` — from parts encoded once by asn1crypto and cached.

Building them as asn1crypto objects took about a fifth of a signature's CPU time, and
asn1crypto 1.5.1 has a trap on top: ``dump()`` takes any definite length whose last byte is 0x80
(a 128-byte TSTInfo, a 1408-byte SignedData…) for an indefinite one and re-encodes the whole tree
below from its parsed children — about half a second for one time-stamp token, and with the
lengths the bench's certificates give, one signature in ten or so. Bytes made here are DER
already, and :class:`EncodedContentInfo` hands them back as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Self

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = [
    "EncodedAttributes",
    "EncodedContentInfo",
    "explicit",
    "generalized_time",
    "integer",
    "octet_string",
    "retag",
    "sequence",
    "set_of",
    "to_asn1",
    "tlv",
    "utc_time",
]


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: the tag byte (class, constructed bit and number < 31), the definite
    length, the content."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    # DER orders the members of a SET OF by their encodings (X.690 §11.6)
    return tlv(0x31, b"".join(sorted(parts)))


def explicit(number: int, inner: bytes) -> bytes:
    """``[number] EXPLICIT`` around an encoded element."""
    return tlv(0xA0 | number, inner)


def retag(element: bytes, tag: int) -> bytes:
    """``[n] IMPLICIT``: the same element under another tag byte (lengths stay as they are)."""
    return bytes((tag,)) + element[1:]


def integer(value: int) -> bytes:
    # two's complement, shortest form: a positive number whose top bit is set gets a 0x00
    bits = value.bit_length() if value >= 0 else (~value).bit_length()
    return tlv(0x02, value.to_bytes(bits // 8 + 1, "big", signed=True))


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def generalized_time(at: datetime) -> bytes:
    """``YYYYMMDDHHMMSS[.f]Z`` in UTC, the fraction without trailing zeros (X.690 §11.7)."""
    at = at.astimezone(UTC)
    fraction = f".{at.microsecond:06d}".rstrip("0") if at.microsecond else ""
    return tlv(0x18, (at.strftime("%Y%m%d%H%M%S") + fraction + "Z").encode("ascii"))


def utc_time(at: datetime) -> bytes:
    return tlv(0x17, at.astimezone(UTC).strftime("%y%m%d%H%M%SZ").encode("ascii"))


class _Encoded:
    """A value encoded here: parsed lazily as usual when read, but dumped as the DER it was loaded
    from while nobody has changed it — also when a parent passes ``force`` down, which asn1crypto
    does after misreading the parent's own length (see the module's note): ``force`` asks for
    DER, and these bytes are DER already."""

    _der: bytes = b""

    @classmethod
    def of(cls, encoded: bytes) -> Self:
        value = cls.load(encoded)  # type: ignore[attr-defined]
        value._der = encoded
        return value

    def dump(self, force: bool = False) -> bytes:
        if not self._der or self._is_mutated():  # type: ignore[attr-defined]
            return super().dump(force)  # type: ignore[misc]
        return self._der


class EncodedContentInfo(_Encoded, cms.ContentInfo):
    """A ``ContentInfo`` (a time-stamp token, a signature's CMS) encoded here."""


class EncodedAttributes(_Encoded, cms.CMSAttributes):
    """Signed or unsigned attributes encoded here."""


def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    """A ``cryptography`` certificate as asn1crypto's, which pyHanko speaks."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
