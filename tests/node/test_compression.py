"""gzip for push bodies and bundles: ISA-L's and zlib's streams are one format."""

from __future__ import annotations

import gzip
import random

import pytest

from node.compression import gunzip, gzip_body
from schemas.errors import ErrorCode, GuantongError

BODY = b"".join(
    b'{"origin":"js.c01.k01.s%04d","seq":%d,"data":{"text":"%s"}}\n'
    % (i % 97, i, random.Random(i).randbytes(12).hex().encode())
    for i in range(2_000)
)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_every_level_writes_gzip_that_both_inflaters_read(level: int) -> None:
    packed = gzip_body(BODY, level)
    assert gzip.decompress(packed) == BODY
    assert gunzip(packed, limit=len(BODY), what="body") == BODY
    assert len(packed) < len(BODY) // 2 or level == 0  # 0 stores


def test_beside_level_1_the_stream_is_zlibs_and_carries_no_time() -> None:
    assert gzip_body(BODY, 6) == gzip.compress(BODY, 6, mtime=0)
    assert gzip_body(BODY, 0) == gzip.compress(BODY, 0, mtime=0)
    assert gzip_body(BODY, 1)[4:8] == b"\0\0\0\0"  # no mtime: the same body, the same bytes


def test_gunzip_reads_what_the_standard_library_writes() -> None:
    assert gunzip(gzip.compress(BODY), limit=len(BODY), what="body") == BODY
    assert gunzip(gzip.compress(b""), limit=0, what="body") == b""


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (gzip.compress(BODY)[:-20], ErrorCode.MALFORMED, "truncated"),
        (gzip.compress(BODY) + b"xx", ErrorCode.MALFORMED, "bytes after"),
        (gzip.compress(BODY) * 2, ErrorCode.MALFORMED, "bytes after"),
        (b"not gzip at all", ErrorCode.MALFORMED, "not valid gzip"),
        (b"", ErrorCode.MALFORMED, "truncated"),
        (
            gzip.compress(BODY)[:-8] + b"\0\0\0\0" + gzip.compress(BODY)[-4:],
            ErrorCode.MALFORMED,
            "not valid gzip",
        ),
        (gzip.compress(b"\n" * (8 << 20)), ErrorCode.TOO_LARGE, "inflates beyond"),
    ],
    ids=["truncated", "trailing", "two-members", "garbage", "empty", "bad-crc", "bomb"],
)
def test_gunzip_refuses_damage_and_bombs(data: bytes, code: ErrorCode, words: str) -> None:
    with pytest.raises(GuantongError) as refused:
        gunzip(data, limit=1 << 20, what="body")
    assert refused.value.code is code
    assert words in refused.value.message
