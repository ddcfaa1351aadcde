"""Enrollment at the child: ask for a certificate with a token, check and install the answer.

The token names the child's id and tier and the province root key id. The answer is
trusted only if its chain runs from a self-signed root with exactly that key id down to a
certificate for this node's own key, each link signed by the one above; then the anchor,
the chain and the province secret are stored and the node is enrolled. Online the request
travels as ``POST /v1/enroll``; offline, as a request file and an answer file.

A rotation's answer has the same shape, and its chain is learnt the same way, up to the
anchor this node already has: a parent that rotated its own key since this node enrolled
certifies the new key with a key this node learns only from that chain.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from node.auth import error_of
from node.runtime import Node
from node.settings import load_settings, update_config
from schemas.certs import Certificate
from schemas.enrollment import decode_token, sign_proof
from schemas.errors import ErrorCode, GuantongError, code_of, describe
from schemas.signing import Signer

__all__ = [
    "enroll_online",
    "enrollment_request",
    "install_enrollment",
    "rotate_online",
]


def enrollment_request(node: Node, token: str) -> dict[str, Any]:
    payload = decode_token(token)
    if payload["child"] != node.id or payload["tier"] != node.settings.tier.value:
        raise GuantongError(
            ErrorCode.TOKEN_MISMATCH,
            f"this token is for {payload['child']} ({payload['tier']}), this node is "
            f"{node.id} ({node.settings.tier.value})",
        )
    return {
        "node": node.id,
        "tier": node.settings.tier.value,
        "key": node.signer.public_b64u,
        "token": token,
        "proof": sign_proof(node.signer, node.id, token),
    }


def install_enrollment(node: Node, token: str, response: Any) -> Certificate:
    """Verify the answer against the token's anchor and store it; returns our certificate."""
    payload = decode_token(token)
    if not isinstance(response, dict) or not {"cert", "chain"} <= set(response):
        raise GuantongError(ErrorCode.MALFORMED, 'an enrollment answer is {"cert","chain",…}')
    anchor = payload["root"]
    cert = _install_answer(node, response, anchor, node.signer.key_id)
    values: dict[str, str | int | bool] = {"root_key_id": anchor}
    secret = response.get("province_secret")
    if isinstance(secret, str) and secret:
        values["province_secret"] = secret
    update_config(node.settings.home, values)
    node.settings = load_settings(node.settings.home, **_explicit(node))
    return cert


def _install_answer(node: Node, response: dict[str, Any], anchor: str, key: str) -> Certificate:
    """Check an answer's certificate (for this node, of ``key``) and its chain (ending at
    the self-signed root ``anchor``), then trust them, root first, each checked by the one
    above it, in one transaction; returns the certificate."""
    if response.get("root_key_id") not in (None, anchor):
        raise GuantongError(ErrorCode.BAD_SIGNATURE, "the answer names another root than ours")
    if not isinstance(response.get("chain"), list):
        raise GuantongError(ErrorCode.MALFORMED, 'an answer\'s "chain" is a list of certificates')
    cert = Certificate.parse_obj(response.get("cert"))
    chain = [Certificate.parse_obj(c) for c in response["chain"]]
    if cert.node != node.id or cert.key_id != key:
        raise GuantongError(ErrorCode.BAD_SIGNATURE, "the certificate is not for this node's key")
    if not chain or not chain[-1].self_signed or chain[-1].key_id != anchor:
        raise GuantongError(ErrorCode.BAD_SIGNATURE, f"the chain does not end at the root {anchor}")
    node.keyring.anchor = anchor
    with node.store.write() as conn:
        for link in reversed(chain):  # root first: each certificate is checked by the one above
            node.keyring.add_certificate(link, conn)
        node.keyring.add_certificate(cert, conn)
    return cert


def _explicit(node: Node) -> dict[str, Any]:
    """Settings given in code rather than the file (tests); re-applied after reloading."""
    return {"db_url": node.settings.db_url} if node.settings.db_url else {}


async def enroll_online(
    node: Node, parent_url: str, token: str, client: httpx.AsyncClient
) -> Certificate:
    request = enrollment_request(node, token)
    try:
        response = await client.post(f"{parent_url.rstrip('/')}/v1/enroll", json=request)
    except httpx.HTTPError as exc:
        raise GuantongError(
            ErrorCode.PARENT_UNREACHABLE, f"parent {parent_url} unreachable: {describe(exc)}"
        ) from exc
    return install_enrollment(node, token, _answer_of(response, parent_url, "enrollment"))


async def rotate_online(node: Node, fresh: Signer, client: httpx.AsyncClient) -> Certificate:
    """Ask the parent, signing with the current key, to certify ``fresh``; trust the answer.

    The caller swaps the key files once this returns: until then the old key stays in use,
    and it stays valid for what it signed.
    """
    parent = node.settings.parent_url
    if not parent:
        raise GuantongError(ErrorCode.NO_PARENT, f"{node.id} has no parent to certify a new key")
    body = {"key": fresh.public_b64u, "proof": sign_proof(fresh, node.id, "rotate")}
    try:
        response = await client.post(f"{parent.rstrip('/')}/v1/rotate", content=orjson.dumps(body))
    except httpx.HTTPError as exc:
        raise GuantongError(
            ErrorCode.PARENT_UNREACHABLE, f"parent {parent} unreachable: {describe(exc)}"
        ) from exc
    answer = _answer_of(response, parent, "rotation")
    anchor = node.keyring.anchor
    if anchor is None:
        raise GuantongError(ErrorCode.NOT_ENROLLED, f"{node.id} has no trust anchor to check with")
    if not isinstance(answer, dict) or not {"cert", "chain"} <= set(answer):
        raise GuantongError(ErrorCode.MALFORMED, 'a rotation answer is {"cert","chain",…}')
    return _install_answer(node, answer, anchor, fresh.key_id)


def _answer_of(response: httpx.Response, parent: str, what: str) -> Any:
    """The JSON of a ``200`` answer. A refusal, or an answer that is not JSON (the error
    page of a proxy in front of the hub), is a GuantongError with a stable code: the hub's
    own when it sent one; ``parent_unreachable`` for a ``5xx`` without one (a gateway that
    did not reach the hub: try again later); else ``malformed``."""
    status = response.status_code
    if status != 200:
        error = error_of(response)
        if "code" not in error and status >= 500:
            raise GuantongError(
                ErrorCode.PARENT_UNREACHABLE,
                f"{what} failed: {parent} answered HTTP {status}, not as a Guantong hub",
            )
        message = error.get("message", f"HTTP {status}")
        raise GuantongError(code_of(error.get("code")), f"{what} refused: {message}")
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        kind = response.headers.get("content-type", "no content type")
        raise GuantongError(
            ErrorCode.MALFORMED, f"the {what} answer of {parent} is not JSON ({kind})"
        ) from exc
