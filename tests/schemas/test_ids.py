from __future__ import annotations

import random
import uuid

import pytest

from schemas.errors import ErrorCode, GuantongError
from schemas.ids import (
    check_node_id,
    depth,
    is_contract_name,
    is_in_subtree,
    is_key_id,
    is_node_id,
    is_uuid,
    parent_of,
    uuid7,
)


@pytest.mark.parametrize("good", ["js", "js.wx", "js.wx.jy.s012", "a.b.c.d.e.f", "0-a", "a" * 32])
def test_valid_node_ids(good: str) -> None:
    assert is_node_id(good)
    assert check_node_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "JS", "-js", "js.", ".js", "js..wx", "a.b.c.d.e.f.g", "a" * 33, "js.wx_1", "中"]
)
def test_invalid_node_ids(bad: str) -> None:
    assert not is_node_id(bad)
    with pytest.raises(GuantongError) as info:
        check_node_id(bad)
    assert info.value.code is ErrorCode.INVALID_NODE_ID


def test_subtree_is_prefix_on_segment_boundaries() -> None:
    assert is_in_subtree("js.wx.jy", "js.wx")
    assert is_in_subtree("js.wx", "js.wx")
    assert not is_in_subtree("js.wxy", "js.wx")
    assert not is_in_subtree("js", "js.wx")
    assert parent_of("js.wx.jy") == "js.wx"
    assert parent_of("js") is None
    assert depth("js.wx.jy.s012") == 4


def test_uuid7_is_lowercase_v7_and_time_ordered() -> None:
    first, second = uuid7(1_700_000_000_000), uuid7(1_700_000_000_001)
    assert is_uuid(first)
    assert uuid.UUID(first).version == 7
    assert uuid.UUID(first).variant == uuid.RFC_4122
    assert first < second
    assert len({uuid7() for _ in range(1000)}) == 1000


def test_uuid7_from_a_seeded_generator_is_reproducible() -> None:
    made = [uuid7(1_700_000_000_000, rng=random.Random(7)) for _ in range(2)]
    assert made[0] == made[1] and is_uuid(made[0])
    assert uuid.UUID(made[0]).version == 7 and uuid.UUID(made[0]).variant == uuid.RFC_4122
    assert made[0] != uuid7(1_700_000_000_000, rng=random.Random(8))


def test_key_ids_and_contract_names() -> None:
    assert is_key_id("0123456789abcdef")
    for bad in ("", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "\x00" * 16):
        assert not is_key_id(bad)
    assert is_contract_name("task_report") and is_contract_name("a" * 64)
    for bad in ("", "Opinion", "1opinion", "task-report", "a" * 65, "opinion\x00"):
        assert not is_contract_name(bad)
    assert not is_uuid("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\x00")


def test_an_exception_is_described_by_its_kind_even_without_a_message() -> None:
    import httpx

    from schemas.errors import describe

    assert describe(httpx.ReadTimeout("")) == "ReadTimeout"
    assert describe(ValueError("bad")) == "ValueError: bad"
