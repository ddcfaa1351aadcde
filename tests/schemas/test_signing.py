"""Signatures with fixed seeds: RFC 8032 §7.1 test vectors and our own known answers."""

from __future__ import annotations

import pytest

from schemas.signing import (
    Signer,
    b64u_decode,
    b64u_encode,
    is_signature,
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
