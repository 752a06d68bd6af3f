"""Leaf encoding: RFC 8785 canonical JSON and the RFC 9162 domain-separated hashes."""

from __future__ import annotations

import hashlib
import math

import pytest

from services.audit.canonical import (
    EMPTY_ROOT,
    NonCanonicalRecordError,
    canonical_bytes,
    leaf_hash,
    node_hash,
)


def test_one_record_has_one_byte_form() -> None:
    a = {"type": "vn.gov.lienthong.dossier.received", "ma_ho_so": "000.00.12.H56-250101-0001",
         "nguoi_nop": "Nguyễn Thị Hồng", "so_trang": 3, "da_ky": True, "ghi_chu": None}
    b = dict(reversed(list(a.items())))
    assert canonical_bytes(a) == canonical_bytes(b)
    assert canonical_bytes(a).startswith(b'{"da_ky":true,"ghi_chu":null,"ma_ho_so":')
    assert "Nguyễn Thị Hồng".encode() in canonical_bytes(a)  # raw UTF-8, not \u escapes


def test_rfc8785_number_and_key_order_rules() -> None:
    # RFC 8785 §3.2.2.3 numbers and §3.2.3 UTF-16 key order (examples from the RFC).
    assert canonical_bytes({"n": [1.0, 1e21, 1e-7, 0.000001, -0.0, 333333333.33333329]}) == \
        b'{"n":[1,1e+21,1e-7,0.000001,0,333333333.3333333]}'
    # UTF-16 order puts U+1F600 (D83D DE00) before U+FB33, unlike code point order.
    assert canonical_bytes({"\u20ac": 1, "\r": 2, "\ufb33": 5, "\U0001f600": 3, "1": 4}) == \
        '{"\\r":2,"1":4,"\u20ac":1,"\U0001f600":3,"\ufb33":5}'.encode()


@pytest.mark.parametrize("record", [{"x": math.nan}, {"x": 2**60}, {1: "a"}, ["not", "an object"]])
def test_records_without_a_canonical_form_are_refused(record) -> None:
    with pytest.raises(NonCanonicalRecordError):
        canonical_bytes(record)


def test_hashes_are_domain_separated_sha256() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") != EMPTY_ROOT


def test_the_fast_path_gives_exactly_rfc8785_bytes() -> None:
    """canonical_bytes skips rfc8785 for plain records; on random records both must agree byte for byte."""
    import random

    import rfc8785

    rng = random.Random(8785)
    alphabet = ["a", "Z", "é", "ệ", "Đ", "\u0000", "\u001f", "\u007f", "\"", "\\", "/", "\n", "\t", "\u2028",
                "€", "\ufeff", "😀", "𝄞", "\ue000", " "]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    def value(depth: int) -> object:
        pick = rng.randint(0, 9 if depth < 3 else 5)
        if pick == 0:
            return text()
        if pick == 1:
            return rng.choice([True, False, None])
        if pick == 2:
            return rng.choice([0, -1, 7, 2**53, -(2**53), 10**15, rng.randint(-(2**40), 2**40)])
        if pick == 3:
            return rng.choice([0.5, 1.0, -0.0, 1e21, 1e-7, 3.14159, 100.0, 1e-4, 9.999e-5, 1e16, 1e16 - 2,
                               4503599627370495.5, 123456789012.25, 0.1 + 0.2, 5e-324, 1.7976931348623157e308,
                               rng.uniform(-1e6, 1e6), round(rng.uniform(0, 5000), 3),
                               math.copysign(10 ** rng.uniform(-12, 25), rng.uniform(-1, 1)),
                               float(rng.randint(-(2**60), 2**60)) / 2 ** rng.randint(0, 70)])
        if pick in (4, 5):
            return text()
        if pick in (6, 7):
            return {text(): value(depth + 1) for _ in range(rng.randint(0, 4))}
        return [value(depth + 1) for _ in range(rng.randint(0, 4))]

    from services.audit.canonical import _plain

    fast = fast_floats = 0
    for _ in range(6000):
        record = {text(): value(0) for _ in range(rng.randint(1, 5))}
        fast += _plain(record)
        fast_floats += _plain(record) and any(type(v) is float for v in record.values())
        try:
            expected = rfc8785.dumps(record)
        except rfc8785.CanonicalizationError:
            with pytest.raises(NonCanonicalRecordError):
                canonical_bytes(record)
            continue
        assert canonical_bytes(record) == expected, record
    assert fast > 1000  # the fast path was really exercised
    assert fast_floats > 100  # with floats too
