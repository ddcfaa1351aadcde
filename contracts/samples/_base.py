"""Shared pieces of the sample generators: the per-run context, ids, times, people and places."""

from __future__ import annotations

import bisect
import functools
import hashlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Record = dict[str, Any]

# --- time: integer milliseconds since the fixed epoch 2026-01-05T00:00:00.000Z --------------

EPOCH = date(2026, 1, 5)
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
NOW = 300 * DAY
"""The samples' "today" (2026-11-01): open work was received shortly before it."""


@functools.lru_cache(maxsize=8192)
def date_at(days: int) -> str:
    """``YYYY-MM-DD`` of the day ``days`` after the epoch (negative: before it)."""
    return (EPOCH + timedelta(days=days)).isoformat()


def timestamp(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and ``Z`` for ``ms`` after the epoch."""
    days, rest = divmod(ms, DAY)
    seconds, milli = divmod(rest, SECOND)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{date_at(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}Z"


def days_from_epoch(year: int, month: int, day: int) -> int:
    return (date(year, month, day) - EPOCH).days


# --- ids --------------------------------------------------------------------------------------


def derive_seed(*parts: object) -> int:
    """A 256-bit seed from ``parts`` (never Python's salted ``hash()``)."""
    text = "\x1f".join(str(p) for p in ("guantong-samples", *parts))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest(), "big")


class RecordIds:
    """Record id number ``index`` of ``contract`` for one (origin, seed): a UUIDv4 from SHA-256.

    Ids depend only on origin, seed, contract and index, so any generator can name the
    records another generator yields for the same origin and seed without producing them.
    """

    def __init__(self, origin: str, seed: int) -> None:
        self._prefix = hashlib.sha256(f"guantong-sample-id\x1f{origin}\x1f{seed}".encode())

    def __call__(self, contract: str, index: int) -> str:
        digest = self._prefix.copy()
        digest.update(f"\x1f{contract}\x1f{index}".encode())
        return str(uuid.UUID(bytes=digest.digest()[:16], version=4))


# Records of the same origin and seed that other records refer to: the first POOL[c] records
# of contract c (``task`` ids name protocol tasks, which are not records of any contract).
POOL = {
    "deputy": 20,
    "opinion": 200,
    "suggestion": 50,
    "livelihood_project": 20,
    "supervision_item": 50,
    "task": 40,
}


# --- weighted choice --------------------------------------------------------------------------


class Weighted(Generic[T]):
    """A fixed weighted choice; cheaper than ``random.choices`` on every call."""

    __slots__ = ("_cum", "_total", "_values")

    def __init__(self, pairs: Sequence[tuple[T, int]]) -> None:
        self._values = tuple(v for v, _ in pairs)
        cum: list[int] = []
        total = 0
        for _, weight in pairs:
            total += weight
            cum.append(total)
        self._cum = cum
        self._total = total

    def __call__(self, rng: random.Random) -> T:
        return self._values[bisect.bisect_right(self._cum, rng.random() * self._total)]


# --- people and places ------------------------------------------------------------------------

# fmt: off

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
GIVEN_MALE = (
    "建国", "建军", "国强", "志强", "伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "斌",
    "亮", "金土", "根生", "福根", "小龙", "海峰", "文斌", "立新", "卫东", "振华", "宏伟", "俊杰",
    "浩然", "子轩", "宇航", "家豪", "永康", "德明", "国平", "春林", "晓东", "鹏飞", "正刚", "成",
)
GIVEN_FEMALE = (
    "秀英", "桂英", "秀兰", "玉兰", "丽", "敏", "静", "芳", "燕", "娟", "霞", "红梅", "丽华",
    "美玲", "雪梅", "海燕", "晓红", "春燕", "凤英", "婷", "欣怡", "雨桐", "梓涵", "佳怡", "慧敏",
    "小琴", "玉珍", "建英", "文静", "丹", "艳", "琳", "萍", "莉", "晶",
)
MOBILE_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "166", "173", "177", "180", "181", "182", "183",
    "185", "186", "187", "188", "189", "191", "198", "199",
)

PROVINCE, CITY, COUNTY = "江苏省", "无锡市", "江阴市"
COUNTY_CODE = "320281"
AREA_CODE = "0510"
TOWNS = (
    "澄江街道", "南闸街道", "云亭街道", "夏港街道", "申港街道", "利港街道", "璜土镇", "月城镇",
    "青阳镇", "徐霞客镇", "华士镇", "周庄镇", "新桥镇", "长泾镇", "顾山镇", "祝塘镇",
)
VILLAGES = (
    "五星村", "向阳村", "红星村", "光明村", "新华村", "和平村", "幸福村", "永安村", "金港村",
    "三房巷村", "长江村", "华西村", "桃园村", "凤凰村", "朝阳村", "东湖村", "梅园村", "南街社区",
    "北门社区", "虹桥社区", "澄南社区", "天华社区", "花园社区", "滨江社区", "芙蓉社区", "延陵社区",
)
ROADS = (
    "人民路", "澄江中路", "虹桥北路", "长江路", "延陵路", "朝阳路", "环城北路", "芙蓉大道",
    "滨江路", "青果路", "寿山路", "天华路", "澄山路", "通江路",
)
ESTATES = (
    "怡景苑", "春晖花园", "阳光新村", "梅园新村", "东盛花园", "长江新村", "香山苑", "福源小区",
    "幸福里", "君山一村", "虹桥三村", "澄江福地", "金色家园", "锦绣江南",
)
SCHOOLS = (
    "实验小学", "中心小学", "城中实验小学", "南菁实验学校", "华士实验中学", "第一中学",
    "中心幼儿园",
)
# fmt: on

# Handling units: departments of the county government, attached to the county hub.
UNITS = {
    "u-zjj": "住房和城乡建设局",
    "u-jtj": "交通运输局",
    "u-jyj": "教育局",
    "u-wjw": "卫生健康委员会",
    "u-mzj": "民政局",
    "u-rsj": "人力资源和社会保障局",
    "u-sthjj": "生态环境局",
    "u-nyncj": "农业农村局",
    "u-gaj": "公安局",
    "u-scjgj": "市场监督管理局",
    "u-cgj": "城市管理局",
    "u-slj": "水利局",
    "u-fgw": "发展和改革委员会",
    "u-czj": "财政局",
    "u-zrzyj": "自然资源和规划局",
    "u-wtlj": "文体广电和旅游局",
    "u-ybj": "医疗保障局",
    "u-xzspj": "行政审批局",
}
UNIT_CODES = tuple(UNITS)

PHOTO = Weighted([("image/jpeg", 85), ("image/png", 15)])
DOCUMENT = Weighted([("application/pdf", 60), ("image/jpeg", 40)])  # scanned or photographed
_EXTENSION = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf", "video/mp4": "mp4"}
_SIZE = {
    "image/jpeg": (80_000, 6_000_000),
    "image/png": (50_000, 3_000_000),
    "application/pdf": (30_000, 2_000_000),
    "video/mp4": (2_000_000, 80_000_000),
}


NUMERALS = (
    "一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二", "十三", "十四",
    "十五", "十六", "十七", "十八", "十九", "二十",
)  # fmt: skip


def town_code(town: str) -> str:
    """The 3-digit township part of a region code: 街道 0xx, 镇 1xx."""
    number = TOWNS.index(town) + 1
    return f"{number:03d}" if town.endswith("街道") else f"{100 + number:03d}"


def _segments(node: str) -> list[str]:
    return node.split(".")


@dataclass(slots=True)
class Context:
    """Everything one run of a generator needs: its random stream and where it runs."""

    rng: random.Random
    origin: str
    seed: int
    major: int
    minor: int
    ids: RecordIds
    index: int = 0
    """Number of the record being made (0-based), for values that must be unique in a run."""
    hub: str = field(init=False)
    """The county-level hub above ``origin`` (``origin`` itself when it is a hub)."""
    at_station: bool = field(init=False)
    home_town: str = field(init=False)
    _memo: dict[str, tuple[str, ...]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        parts = _segments(self.origin)
        self.at_station = len(parts) >= 4
        self.hub = ".".join(parts[:3])
        last = parts[-1]
        number = int(last[1:]) if last[:1] == "s" and last[1:].isdigit() else derive_seed(last)
        self.home_town = TOWNS[(number - 1) % len(TOWNS)]

    # randomness
    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def pick(self, values: Sequence[T]) -> T:
        return values[int(self.rng.random() * len(values))]

    def between(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        return low + int(self.rng.random() * (high - low + 1))

    # references
    def remember(self, key: str, make: Callable[[], tuple[str, ...]]) -> tuple[str, ...]:
        """``make()`` on first use, then the same values for the rest of the run."""
        values = self._memo.get(key)
        if values is None:
            values = self._memo[key] = make()
        return values

    def pool(self, contract: str) -> tuple[str, ...]:
        return self.remember(
            f"pool:{contract}", lambda: tuple(self.ids(contract, i) for i in range(POOL[contract]))
        )

    def ref(self, contract: str) -> str:
        return self.pick(self.pool(contract))

    def refs(self, contract: str, count: int) -> list[str]:
        return self.rng.sample(self.pool(contract), count)

    # nodes
    def unit(self, code: str | None = None) -> str:
        return f"{self.hub}.{code or self.pick(UNIT_CODES)}"

    def station(self) -> str:
        """A station node: the origin when it is one, else a station under the hub."""
        if self.at_station:
            return self.origin
        return f"{self.hub}.s{self.between(1, 40):03d}"

    # people
    def person(self) -> tuple[str, str]:
        """``(name, gender)``."""
        if self.rng.random() < 0.55:
            return self.pick(SURNAMES) + self.pick(GIVEN_MALE), "male"
        return self.pick(SURNAMES) + self.pick(GIVEN_FEMALE), "female"

    def mobile(self, rng: random.Random | None = None) -> str:
        rng = rng or self.rng
        prefix = MOBILE_PREFIXES[int(rng.random() * len(MOBILE_PREFIXES))]
        return f"{prefix}{int(rng.random() * 100_000_000):08d}"

    # places
    def town(self) -> str:
        if self.at_station and self.rng.random() < 0.85:
            return self.home_town
        return self.pick(TOWNS)

    # time
    def moment(self, first_day: int, last_day: int, *, office: bool = True) -> int:
        """A time on a day in ``[first_day, last_day]``; office hours are 08:30–17:30 in China."""
        day = self.between(first_day, last_day) * DAY
        if office:
            return day + 30 * MINUTE + int(self.rng.random() * 9 * HOUR)
        return day + int(self.rng.random() * DAY)

    def later(self, start: int, low: int, high: int, *, office: bool = False) -> int:
        """A time ``low`` to ``high`` ms after ``start`` (skewed early); with ``office``, moved
        forward into office hours (08:30-17:30 China time, i.e. 00:30-09:30 UTC)."""
        span = high - low
        moment = start + low + int(self.rng.random() * self.rng.random() * span)
        moment += self.between(0, 999)
        day, rest = divmod(moment, DAY)
        if not office or 30 * MINUTE <= rest < 9 * HOUR + 30 * MINUTE:
            return moment
        if rest >= 9 * HOUR + 30 * MINUTE:
            day += 1
        return day * DAY + 30 * MINUTE + int(self.rng.random() * 2 * HOUR)

    # files
    def file(self, stem: str) -> Record:
        if "视频" in stem:
            media = "video/mp4"
        elif "照片" in stem or "位置" in stem:
            media = PHOTO(self.rng)
        else:
            media = DOCUMENT(self.rng)
        low, high = _SIZE[media]
        return {
            "name": f"{stem}.{_EXTENSION[media]}",
            "sha256": f"{self.rng.getrandbits(256):064x}",
            "size": self.between(low, high),
            "media_type": media,
        }

    def files(self, stems: Sequence[str], most: int) -> list[Record]:
        chosen = self.rng.sample(stems, self.between(1, min(most, len(stems))))
        return [self.file(stem) for stem in chosen]


Generator = Callable[[Context], Record]
"""Makes the data of one record (without its id) from the context's random stream."""
