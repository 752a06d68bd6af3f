"""DER written by hand (services/signing/der.py) for time-stamp tokens and signatures."""

from __future__ import annotations

from asn1crypto import cms, core

from services.signing import der


def test_encodings_match_asn1crypto() -> None:
    for value in (0, 1, 127, 128, 255, 256, 2**63, 2**64 - 1, -1, -128, -129):
        assert der.integer(value) == core.Integer(value).dump()
    for size in (0, 127, 128, 255, 256, 65536):
        assert der.octet_string(b"x" * size) == core.OctetString(b"x" * size).dump()
    members = [core.Integer(v).dump() for v in (300, 2, 70000)]
    assert der.set_of(*members) == core.SetOf([core.Integer(v) for v in (300, 2, 70000)], spec=core.Integer).dump()


def _content_info_whose_length_ends_in_0x80() -> tuple[bytes, bytes]:
    for size in range(1000, 1300):
        content = b"x" * size
        encoded = der.sequence(cms.ContentType("data").dump(), der.explicit(0, der.octet_string(content)))
        if encoded[3] == 0x80:  # 30 82 hh 80: definite, but asn1crypto takes it for indefinite
            return encoded, content
    raise AssertionError("no such size")


def test_encoded_content_info_is_dumped_as_loaded_until_changed() -> None:
    encoded, content = _content_info_whose_length_ends_in_0x80()
    token = der.EncodedContentInfo.of(encoded)
    assert token["content"].native == content  # read as usual
    attribute = cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]})
    assert encoded in attribute.dump() and encoded in attribute.dump(force=True)
    assert token.dump(force=True) == encoded
    token["content_type"] = "signed_data"
    assert token.dump() != encoded and token.dump()[4:].startswith(cms.ContentType("signed_data").dump())
