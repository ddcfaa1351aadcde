"""Who is calling: the single authentication seam of the hub's endpoints.

Until request signatures land (PROTOCOL §6, the trust issue), the caller is whoever the
``Guantong-Node`` header names, checked for form only. Every hub endpoint asks this one
function, so signed requests replace it without touching the routes.
"""

from __future__ import annotations

from fastapi import Request

from schemas.errors import ErrorCode, GuantongError
from schemas.http import NODE_HEADER
from schemas.ids import is_node_id

__all__ = ["caller_of"]


def caller_of(request: Request) -> str | None:
    node = request.headers.get(NODE_HEADER)
    if node is None:
        return None
    if not is_node_id(node):
        raise GuantongError(ErrorCode.UNAUTHENTICATED, f"{NODE_HEADER} is not a node id")
    return node
