"""Signatures with fixed seeds: RFC 8032 §7.1 test vectors and our own known answers."""

from __future__ import annotations

import pytest

from schemas.enrollment import verify_proof
from schemas.signing import (
    Signer,
    b64u_decode,
    b64u_encode,
    is_signature,
    is_weak_key,
    key_id,
    signing_bytes,
    split_signature,
    verify_bytes,
    verify_object,
)

# RFC 8032 §7.1, TEST 1 and TEST 2.
RFC_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC_VECTORS)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    signer = Signer.from_seed(bytes.fromhex(seed))
    assert signer.public_raw.hex() == public
    sig = signer.sign(bytes.fromhex(message))
    kid, raw = split_signature(sig)
    assert kid == key_id(bytes.fromhex(public)) == signer.key_id
    assert raw.hex() == signature
    assert verify_bytes(sig, bytes.fromhex(message), signer.public_raw)


def test_key_id_is_sha256_prefix_of_raw_public_key() -> None:
    signer = Signer.from_seed(bytes.fromhex(RFC_VECTORS[0][0]))
    assert signer.key_id == "21fe31dfa154a261"


def test_signed_object_known_answer() -> None:
    signer = Signer.from_seed(bytes(range(32)))
    head = {"origin": "js", "seq": 1, "head": "0" * 64, "time": "2026-11-21T08:00:00.000Z"}
    signed = signer.sign_object(head)
    assert signed["sig"] == (
        "56475aa75463474c:cPkojjt3EwMjeZ7FTEHBJE2nidMvu1J4ji7_YDySaeP13WbUy50bN_"
        "Gj11QoKfVQvTx1X6QbjC8DwoqY0fGJDA"
    )
    assert signing_bytes(signed) == (
        b'{"head":"' + b"0" * 64 + b'","origin":"js","seq":1,"time":"2026-11-21T08:00:00.000Z"}'
    )
    assert verify_object(signed, signer.public_raw)


def test_tampering_breaks_verification() -> None:
    signer = Signer.from_seed(bytes(range(32)))
    other = Signer.from_seed(bytes(range(1, 33)))
    signed = signer.sign_object({"origin": "js", "seq": 2})
    assert not verify_object({**signed, "seq": 3}, signer.public_raw)
    assert not verify_object(signed, other.public_raw)
    # the same signature bytes under another key id are refused before any crypto
    forged = {**signed, "sig": other.key_id + signed["sig"][16:]}
    assert not verify_object(forged, other.public_raw)
    assert not verify_object({"origin": "js"}, signer.public_raw)


@pytest.mark.parametrize(
    "bad", ["", "abc", "zz:AAAA", "0123456789abcdef:***", "0123456789abcdef:AAAA"]
)
def test_malformed_signatures_do_not_verify(bad: str) -> None:
    assert not verify_bytes(bad, b"x", Signer.from_seed(bytes(32)).public_raw)
    assert not is_signature(bad)


def test_the_form_of_a_signature() -> None:
    sig = Signer.from_seed(bytes(32)).sign(b"x")
    assert is_signature(sig)
    for bad in ("\x00" + sig[1:], sig.upper(), sig + "A", sig[:-1], sig.replace(":", ";")):
        assert not is_signature(bad)


def test_b64u_is_strict() -> None:
    assert b64u_decode(b64u_encode(b"\xff\x00")) == b"\xff\x00"
    for bad in ("AA==", "A", "AB", "a+b/"):
        with pytest.raises(ValueError):
            b64u_decode(bad)


# -- weak public keys ----------------------------------------------------------------------

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Affine addition on -x² + y² = 1 + d x² y² (complete for Ed25519)."""
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return (
        (x1 * y2 + y1 * x2) * pow(1 + t, _P - 2, _P) % _P,
        (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P,
    )


def _small_order_points() -> set[tuple[int, int]]:
    """The points P with [8]P the identity, from the curve's equation alone. Orders 1, 2
    and 4 have y in {1, -1, 0}. A point of order 8 doubles to one of order 4, whose y is
    0: y² + x² = 0 in the doubling, so x² = -y², and on the curve d y⁴ + 2 y² - 1 = 0.
    Every candidate y is checked by three doublings."""
    found = set()
    candidates = {0, 1, _P - 1}
    sqrt_m1 = pow(2, (_P - 1) // 4, _P)
    disc = (4 + 4 * _D) % _P  # b² - 4ac for a = d, b = 2, c = -1, in y²
    root = pow(disc, (_P + 3) // 8, _P)
    if root * root % _P != disc:
        root = root * sqrt_m1 % _P
    for y2 in (
        (-2 + root) * pow(2 * _D, _P - 2, _P) % _P,
        (-2 - root) * pow(2 * _D, _P - 2, _P) % _P,
    ):
        y = pow(y2, (_P + 3) // 8, _P)
        if y * y % _P != y2:
            y = y * sqrt_m1 % _P
        if y * y % _P == y2:
            candidates |= {y, _P - y}
    for y in candidates:
        u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
        x = pow(u * pow(v, _P - 2, _P), (_P + 3) // 8, _P)
        if v * x * x % _P != u:
            x = x * sqrt_m1 % _P
        if v * x * x % _P != u:
            continue
        for point in ((x, y), ((_P - x) % _P, y)):
            q = point
            for _ in range(3):
                q = _add(q, q)
            if q == (0, 1):
                found.add(point)
    return found


def test_the_eight_points_of_small_order_are_weak_keys_and_real_keys_are_not() -> None:
    points = _small_order_points()
    assert len(points) == 8
    for x, y in points:
        encoded = (y | ((x & 1) << 255)).to_bytes(32, "little")
        assert is_weak_key(encoded), (x, y)
        flipped = (y | ((1 - (x & 1)) << 255)).to_bytes(32, "little")  # the other sign bit
        assert is_weak_key(flipped)
    assert is_weak_key((_P + 1).to_bytes(32, "little"))  # 1, not reduced
    assert is_weak_key(bytes(31))
    keys = [Signer.from_seed(bytes([i]) * 32).public_raw for i in range(1, 65)]
    assert not any(is_weak_key(k) for k in keys)


def test_a_signature_by_a_weak_key_never_verifies() -> None:
    """For the identity, R = the key and S = 0 'verify' every message under OpenSSL."""
    identity = (1).to_bytes(32, "little")
    forged = f"{key_id(identity)}:{b64u_encode(identity + bytes(32))}"
    assert not verify_bytes(forged, b"any message at all", identity)
    assert not verify_proof(forged, "js.wx.jy.s012", b64u_encode(identity), "gt1.any")
