"""Enrollment at the issuing hub: one-time tokens in, certificates out (PROTOCOL §7).

``create_token`` records the SHA-256 of a fresh token bound to a child id and tier.
``answer`` checks an enrollment request — the token exists, is unused, unexpired and names
exactly this child and tier; the child is a direct child of this hub; the proof shows the
child holds the key — then, in one transaction, issues the certificate, writes it as a
``node_cert`` record into this hub's own log (so every tier above learns the key through
the verified channel), trusts it locally and spends the token. The answer carries the chain
up to the root and the province secret for ``hash`` privacy fields. A spent token's
request is answered again, while the token is valid, if it brings a key this hub has
certified for that child and not revoked (the child lost the first answer); any other key
gets ``token_used``.

Rotation uses the same issuing path: a child proves the current key by signing the
request and the new key by a proof; the old certificate stays valid for what it signed (a
compromised key is revoked instead, from the time of the compromise). A key with any
revocation on record gets no successor, whatever ``revoked_from`` says: a request may be
dated up to 300 s back, so a thief holding a key revoked "now" could otherwise sign a
rotation dated a minute earlier, and one revoked from a time still to come could rotate
before it, in both cases into a certificate that no revocation names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select

from node.db import insert_ignore
from node.keyring import cert_record
from node.runtime import Node
from node.tables import TOKENS
from schemas.certs import Certificate, issue_certificate
from schemas.enrollment import decode_token, encode_token, token_hash, verify_proof
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier, check_node_id, check_tier_depth, parent_of
from schemas.signing import b64u_decode, key_id
from schemas.times import format_time, parse_time

__all__ = [
    "CERT_VALIDITY",
    "answer_enrollment",
    "cert_record",
    "create_token",
    "create_tokens",
    "issue_for",
    "issue_successor",
    "response_for",
]

CERT_VALIDITY = timedelta(days=2 * 365)
TOKEN_VALIDITY = timedelta(days=14)


def create_token(
    node: Node, child: str, tier: Tier, *, valid_for: timedelta = TOKEN_VALIDITY
) -> str:
    (token,) = create_tokens(node, [(child, tier)], valid_for=valid_for)
    return token


def create_tokens(
    node: Node, children: list[tuple[str, Tier]], *, valid_for: timedelta = TOKEN_VALIDITY
) -> list[str]:
    """One-time enrollment tokens for direct children, stored in one transaction (a county
    enrolling its hundred stations prints one sheet of tokens, not a hundred commits)."""
    for child, tier in children:
        check_node_id(child)
        if parent_of(child) != node.id:
            raise GuantongError(
                ErrorCode.NOT_IN_SUBTREE, f"{child} is not a direct child of {node.id}"
            )
        check_tier_depth(child, tier)  # its certificate would be refused everywhere
    if node.certificate is None or node.keyring.anchor is None:
        raise GuantongError(
            ErrorCode.NOT_ENROLLED, f"{node.id} must be enrolled before it enrolls others"
        )
    now = node.clock()
    expires = format_time(now + valid_for)
    tokens = [
        encode_token(
            child=child,
            tier=tier.value,
            issuer=node.id,
            root=node.keyring.anchor,
            expires=expires,
        )
        for child, tier in children
    ]
    rows = [
        {
            "token_hash": token_hash(token),
            "child": child,
            "tier": tier.value,
            "created_at": format_time(now),
            "expires_at": expires,
            "used_at": None,
        }
        for token, (child, tier) in zip(tokens, children, strict=True)
    ]
    with node.store.write() as conn:
        insert_ignore(conn, TOKENS, rows, ["token_hash"])
    return tokens


def issue_for(node: Node, child: str, tier: Tier, key: str, *, also: Any = None) -> Certificate:
    """Certify ``key`` for ``child``; record it, trust it — one transaction."""
    if node.certificate is None:
        raise GuantongError(ErrorCode.NOT_ENROLLED, f"{node.id} has no certificate to issue from")
    now = node.clock()
    cert = issue_certificate(
        node.signer,
        issuer_id=node.id,
        node=child,
        tier=tier,
        public_raw=b64u_decode(key),
        not_before=format_time(now),
        not_after=format_time(now + CERT_VALIDITY),
    )

    def commit(conn: Connection) -> None:
        node.keyring.add_certificate(cert, conn)
        if also is not None:
            also(conn)

    node.put("node_cert", [(None, cert_record(cert, issuer=node.id))], also=commit)
    return cert


def issue_successor(node: Node, child: str, signing_key: str, key: str) -> Certificate:
    """Certify ``key`` for ``child`` in place of ``signing_key``, the key that signed the
    rotation request, with the tier of the child's newest certificate here.

    Refused with ``revoked_key`` when ``signing_key`` has a revocation on record at any
    time (checked in the issuing transaction, so a revocation committed meanwhile counts):
    the request's time is the signer's claim, good to ±300 s, and a revocation from a time
    to come already says the key must not outlive it."""
    current = node.keyring.keys_of(child)
    tier = next((k.cert.tier for k in reversed(current) if k.cert is not None), None)
    if tier is None:
        raise GuantongError(ErrorCode.NOT_ENROLLED, f"{child} has no certificate from {node.id}")

    def refuse_if_revoked(conn: Connection) -> None:
        known = node.keyring.lookup(signing_key, conn)
        if known is None or known.node != child or known.revoked_from is not None:
            since = known.revoked_from if known is not None else None
            raise GuantongError(
                ErrorCode.REVOKED_KEY,
                f"key {signing_key} of {child} is revoked (from {since}): it gets no successor",
            )

    return issue_for(node, child, tier, key, also=refuse_if_revoked)


def response_for(node: Node, cert: Certificate) -> dict[str, Any]:
    """The answer to an enrollment or a rotation. Its chain is that of the key that signed
    ``cert``, not of this hub's current key: a certificate answered again after this hub
    rotated its own key was signed by the old one."""
    secret = node.settings.province_secret
    return {
        "cert": cert.to_dict(),
        "chain": [c.to_dict() for c in node.keyring.chain(cert.signer_key_id)],
        "root_key_id": node.keyring.anchor,
        "province_secret": secret.get_secret_value() if secret else None,
    }


def answer_enrollment(node: Node, request: Any) -> dict[str, Any]:
    """Check an enrollment request and issue the certificate (online or from a file)."""
    if not isinstance(request, dict) or set(request) != {"node", "tier", "key", "token", "proof"}:
        raise GuantongError(
            ErrorCode.MALFORMED, 'an enrollment request is {"node","tier","key","token","proof"}'
        )
    if not all(isinstance(v, str) for v in request.values()):
        raise GuantongError(ErrorCode.MALFORMED, "enrollment request fields are strings")
    child, token = check_node_id(request["node"]), request["token"]
    payload = decode_token(token)
    try:
        tier = Tier(request["tier"])
    except ValueError as exc:
        raise GuantongError(ErrorCode.MALFORMED, f"unknown tier {request['tier']!r}") from exc
    now = node.clock()
    with node.store.read() as conn:
        row = conn.execute(select(TOKENS).where(TOKENS.c.token_hash == token_hash(token))).first()
    if row is None or payload["issuer"] != node.id:
        raise GuantongError(ErrorCode.TOKEN_INVALID, f"{node.id} did not issue this token")
    if row.child != child or payload["child"] != child or row.tier != tier.value:
        raise GuantongError(
            ErrorCode.TOKEN_MISMATCH,
            f"this token is for {row.child} ({row.tier}), not {child} ({tier.value})",
        )
    if not verify_proof(request["proof"], child, request["key"], token):
        raise GuantongError(ErrorCode.BAD_SIGNATURE, "proof of key possession does not verify")
    if parse_time(row.expires_at) < now:
        raise GuantongError(ErrorCode.TOKEN_EXPIRED, f"this token expired at {row.expires_at}")
    if row.used_at is not None:
        again = _answer_again(node, child, request["key"])
        if again is None:
            raise GuantongError(
                ErrorCode.TOKEN_USED, f"this token was already used at {row.used_at}"
            )
        return again

    def spend(conn: Connection) -> None:
        spent = conn.execute(
            TOKENS.update()
            .where(TOKENS.c.token_hash == token_hash(token), TOKENS.c.used_at.is_(None))
            .values(used_at=format_time(now))
        )
        if spent.rowcount != 1:  # raced with another request using the same token
            raise GuantongError(ErrorCode.TOKEN_USED, "this token was already used")

    try:
        cert = issue_for(node, child, tier, request["key"], also=spend)
    except GuantongError as exc:
        again = (
            _answer_again(node, child, request["key"]) if exc.code is ErrorCode.TOKEN_USED else None
        )
        if again is None:
            raise
        return again
    return response_for(node, cert)


def _answer_again(node: Node, child: str, key: str) -> dict[str, Any] | None:
    """The answer to a request whose token is spent: the answer again if this hub has
    certified this very key for this child (and not revoked it), else None (``token_used``).

    A child on a bad link may lose the answer to its enrollment and ask again with the
    same token; refusing would strand it until an operator makes a new token. The request
    has proved possession of ``key`` under the child's own token, and a certificate is
    public, so answering again tells the requester nothing it was not told the first time.
    A request with another key is still refused, and so is any request once the token has
    expired: the request (token and proof) is as sensitive as the answer, which carries
    the province secret, for the token's validity and no longer."""
    try:
        public_raw = b64u_decode(key)
    except ValueError:
        return None
    known = node.keyring.lookup(key_id(public_raw))
    if (
        known is not None
        and known.public_raw == public_raw
        and known.node == child
        and known.cert is not None
        and known.cert.issuer == node.id
        and known.revoked_from is None
    ):
        return response_for(node, known.cert)
    return None
