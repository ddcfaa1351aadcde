"""gzip (PROTOCOL §4, §10): how push bodies are deflated, and the one inflater of push
bodies and bundles.

Compression runs at every tier a push passes: a station gzips its segments, a county
inflates them and gzips them again with its other children's for its city, and so on up.
zlib spent 4 to 8 % of a hub's CPU (docs/performance.md, tenth round). ISA-L (``isal``)
writes and reads the same gzip format several times faster: measured on a relay's body
of 1,000 entries, deflate at level 1 1.6 against 8.1 µs per entry for a body 1 % larger,
inflate 1.6 against 3.6 µs.

- :func:`gzip_body` at level 1 (a hub relaying over the links between offices) uses
  ISA-L; at another level (a station on a slow, metered link, where bytes cost more than
  CPU) zlib, whose level 6 is 10 % smaller than ISA-L's best.
- :func:`gunzip` inflates with ISA-L under a hard output limit: a gzip bomb stops at the
  limit; corrupt, truncated or trailing data is ``malformed``.
"""

from __future__ import annotations

import gzip

from isal import igzip, isal_zlib

from schemas.errors import ErrorCode, GuantongError

__all__ = ["HUB_GZIP_LEVEL", "STATION_GZIP_LEVEL", "gunzip", "gzip_body"]

HUB_GZIP_LEVEL = 1
STATION_GZIP_LEVEL = 6

# isal's stub declares its error an instance of Exception; at run time it is a class
_INFLATE_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]


def gzip_body(data: bytes, level: int) -> bytes:
    """One gzip stream of ``data`` at zlib's ``level``: ISA-L's level 1 for 1, zlib
    otherwise (0 stores)."""
    if level == 1:
        return igzip.compress(data, 1, mtime=0)
    return gzip.compress(data, level, mtime=0)


def gunzip(data: bytes, *, limit: int, what: str) -> bytes:
    """Inflate one gzip stream with a hard output limit (a gzip bomb stops at ``limit``);
    corrupt, truncated or trailing data is ``malformed``. Push bodies and bundles alike."""
    inflater = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except _INFLATE_ERROR as exc:
        raise GuantongError(ErrorCode.MALFORMED, f"{what} is not valid gzip: {exc}") from exc
    if len(out) > limit:
        raise GuantongError(ErrorCode.TOO_LARGE, f"{what} inflates beyond {limit} bytes")
    if not inflater.eof:
        raise GuantongError(
            ErrorCode.MALFORMED, f"{what} is truncated (the gzip stream ends early)"
        )
    if inflater.unused_data:
        raise GuantongError(ErrorCode.MALFORMED, f"{what} has bytes after its gzip stream")
    return out
