"""Citizen opinions (民意): texts from the issue templates in ``_issues``, and their lifecycle.

One random stream serves every opinion version: the same seed yields the same records (ids,
texts, times) under 1.0, 1.1 and 2.0, and only the version-specific fields differ. Issues are
filed under the 2.0 subcategories; 1.x records carry the matching 1.x category, so a 1.1 record
of an issue whose subcategory existed in 1.x upcasts to exactly the 2.0 record.
"""

from __future__ import annotations

import random
from typing import Any

from contracts.samples._base import (
    DAY,
    ESTATES,
    HOUR,
    MINUTE,
    ROADS,
    SCHOOLS,
    VILLAGES,
    Context,
    Record,
    Weighted,
    derive_seed,
    timestamp,
)
from contracts.samples._issues import ISSUES, Issue

SUBCATEGORY = Weighted(
    [
        ("urban_construction", 14), ("transport", 12), ("housing", 10), ("utilities", 6),
        ("education", 7), ("health", 7), ("elderly_care", 8), ("culture_sports", 4),
        ("social_security", 6), ("employment", 4), ("environment", 9), ("agriculture", 5),
        ("public_safety", 5), ("community_governance", 5), ("business_environment", 3),
        ("consumer_rights", 2), ("other", 3),
    ]
)  # fmt: skip
CATEGORY_2 = {
    "urban_construction": "infrastructure", "transport": "infrastructure",
    "housing": "infrastructure", "utilities": "infrastructure",
    "education": "public_services", "health": "public_services",
    "elderly_care": "public_services", "culture_sports": "public_services",
    "social_security": "social_welfare", "employment": "social_welfare",
    "environment": "ecology_agriculture", "agriculture": "ecology_agriculture",
    "public_safety": "governance_safety", "community_governance": "governance_safety",
    "business_environment": "economy", "consumer_rights": "economy", "other": "other",
}  # fmt: skip
# 1.x has no subcategories: the nearest 1.1 category; 1.0 lacks elderly_care and employment.
CATEGORY_1_1 = {
    "housing": "urban_construction", "utilities": "urban_construction",
    "culture_sports": "other", "community_governance": "other",
    "consumer_rights": "business_environment",
}  # fmt: skip
CATEGORY_1_0 = {"elderly_care": "social_security", "employment": "social_security"}

CHANNEL = Weighted([("qr", 45), ("visit", 30), ("hotline", 12), ("deputy_found", 13)])
STATUS = Weighted(
    [
        ("received", 3), ("accepted", 3), ("assigned", 6), ("in_progress", 10),
        ("resolved", 18), ("closed", 55), ("rejected", 5),
    ]
)  # fmt: skip
RATING = Weighted([(5, 60), (4, 25), (3, 9), (2, 4), (1, 2)])
OPENER = {
    "qr": ("", "", "我是{village}的居民，", "本人住在{estate}，"),
    "visit": ("来访群众反映：", "群众来站反映：", "{village}村民来站反映："),
    "hotline": ("来电人反映：", "热线来电反映："),
    "deputy_found": ("代表在走访{village}时发现：", "代表进站接待时了解到：", "代表调研发现："),
}
CLOSING = ("", "", "", "谢谢！", "恳请代表帮忙反映。", "希望尽快给个答复。", "盼复。")
RESOLUTION_SUFFIX = ("", "已电话回访反映人。", "办理情况已向反映人反馈。", "已在站内公示办理结果。")
COMMENTS = {
    5: (
        "处理很及时，非常满意！",
        "代表和部门都很负责，点赞。",
        "问题解决了，谢谢！",
        "说到做到，为民办实事。",
    ),
    4: ("问题基本解决，希望长效管理。", "办理比较及时，满意。", "效果不错，希望后续多关注。"),
    3: ("处理结果一般，还需要继续跟进。", "解决了一部分，还有遗留问题。"),
    2: ("回复太慢了。", "问题没有根本解决。"),
    1: ("问题没有解决，不满意。", "答复敷衍，希望重新办理。"),
}
REJECTIONS = (
    "属于诉讼程序处理事项，已引导依法解决",
    "与前次反映的问题重复，已合并办理",
    "反映内容不具体，多次联系反映人未果",
    "属于民事纠纷，已引导通过人民调解解决",
    "不属于本级职责范围，已告知反映人向有关单位反映",
)
ATTACHMENT_STEMS = ("现场照片1", "现场照片2", "现场照片3", "问题位置", "情况说明", "现场视频")
_OPEN = ("received", "accepted", "assigned", "in_progress")


def opinion(ctx: Context) -> Record:
    rng = ctx.rng
    sub = SUBCATEGORY(rng)
    issue = ctx.pick(ISSUES[sub])
    channel = CHANNEL(rng)
    status = STATUS(rng)
    town = ctx.town()
    words: dict[str, Any] = {
        "village": ctx.pick(VILLAGES),
        "road": ctx.pick(ROADS),
        "estate": ctx.pick(ESTATES),
        "school": ctx.pick(SCHOOLS),
        "town": town,
        "n": ctx.between(2, 9),
        "m": ctx.between(2, 9),
    }
    words["spot"] = ctx.pick(issue.spots).format_map(words)
    opener = ctx.pick(OPENER[channel]).format_map(words)
    record: Record = {
        "channel": channel,
        "category": _category(ctx, sub),
        "content": opener + issue.content.format_map(words) + ctx.pick(CLOSING),
        "status": status,
    }
    if ctx.major >= 2:
        record["subcategory"] = sub
    if ctx.chance(0.95):
        record["title"] = issue.title.format_map(words)
    if ctx.chance(0.9):
        record["location"] = town + words["spot"]
    if channel != "deputy_found":
        phone = ctx.mobile() if not ctx.chance(0.1) else ctx.pick(_regulars(ctx))
        record["reporter_name"] = ctx.person()[0]
        record["reporter_phone"] = phone
        record["reporter_key"] = phone
    if channel == "deputy_found" or ctx.chance(0.5 if channel == "visit" else 0.2):
        record["deputy_id"] = ctx.ref("deputy")
    if ctx.chance(0.08):
        record["campaign_id"] = ctx.pick(ctx.pool("task")[:3])
    _lifecycle(ctx, record, issue, words, status, channel)
    urgency = "urgent" if ctx.chance(0.12) else "normal"
    with_urgency = ctx.chance(0.7)
    attachments = ctx.files(ATTACHMENT_STEMS, 3) if ctx.chance(0.25) else None
    if (ctx.major, ctx.minor) >= (1, 1):  # drawn anyway so every version shares one stream
        if with_urgency:
            record["urgency"] = urgency
        if attachments:
            record["attachments"] = attachments
    return record


def _category(ctx: Context, sub: str) -> str:
    if ctx.major >= 2:
        return CATEGORY_2[sub]
    category = CATEGORY_1_1.get(sub, sub)
    return CATEGORY_1_0.get(category, category) if ctx.minor == 0 else category


def _regulars(ctx: Context) -> tuple[str, ...]:
    """Phones of citizens who report again and again (fixed per origin and seed)."""

    def make() -> tuple[str, ...]:
        rng = random.Random(derive_seed(ctx.origin, ctx.seed, "regulars"))
        return tuple(ctx.mobile(rng) for _ in range(30))

    return ctx.remember("regulars", make)


def _lifecycle(
    ctx: Context, record: Record, issue: Issue, words: dict[str, Any], status: str, channel: str
) -> None:
    """Times and outcome fields, present exactly when ``status`` implies them, increasing."""
    if status in _OPEN:
        received = ctx.moment(240, 295, office=channel != "qr")
    else:
        received = ctx.moment(0, 239, office=channel != "qr")
    record["received_at"] = timestamp(received)
    if status == "received":
        return
    if status == "rejected":
        record["rejected_at"] = timestamp(ctx.later(received, HOUR, 3 * DAY, office=True))
        record["rejection_reason"] = ctx.pick(REJECTIONS)
        return
    accepted = ctx.later(received, 5 * MINUTE, DAY, office=True)
    record["accepted_at"] = timestamp(accepted)
    if status == "accepted":
        return
    assigned = ctx.later(accepted, 30 * MINUTE, 3 * DAY, office=True)
    record["assigned_at"] = timestamp(assigned)
    record["handling_unit"] = ctx.origin if ctx.chance(0.1) else ctx.unit(issue.unit)
    if status in ("assigned", "in_progress"):
        return
    resolved = ctx.later(assigned, DAY, 45 * DAY, office=True)
    record["resolved_at"] = timestamp(resolved)
    record["resolution"] = issue.resolution.format_map(words) + ctx.pick(RESOLUTION_SUFFIX)
    if status == "resolved":
        return
    closed = ctx.later(resolved, HOUR, 7 * DAY)
    if channel != "deputy_found" and ctx.chance(0.85):
        rating = RATING(ctx.rng)
        record["rating"] = rating
        if ctx.chance(0.6):
            record["rating_comment"] = ctx.pick(COMMENTS[rating])
        record["rated_at"] = timestamp(closed)
    record["closed_at"] = timestamp(closed)
