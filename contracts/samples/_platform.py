"""Records the platform itself keeps: task reports, node certificates, data-quality issues.

Certificates are real: keys derive from (seed, node) and every certificate is signed by its
issuer's derived key, so sample chains verify. These keys are public knowledge; never use
them outside samples and tests.
"""

from __future__ import annotations

import functools
import hashlib

from contracts.samples._base import (
    DAY,
    UNIT_CODES,
    UNITS,
    Context,
    Record,
    Weighted,
    timestamp,
)
from schemas.signing import Signer

# --- task report ------------------------------------------------------------------------------

_REPORT_STATUS = Weighted([("done", 45), ("in_progress", 25), ("accepted", 22), ("rejected", 8)])
_NOTES = {
    "accepted": ("已签收，将按期办理。", "已接收，正在研究办理方案。"),
    "in_progress": ("已安排专人办理，预计{d}日内办结。", "已现场查看，正在协调相关单位。"),
    "done": ("已按期办结并向反映人反馈。", "已办结，办理结果已在站内公示。"),
    "rejected": (
        "该事项不属于本单位职责，建议改交{unit}办理。",
        "反映事项已由其他单位办结，不再重复办理。",
    ),
}
_RESOLUTIONS = (
    "经现场核实，问题已整改到位，反映人表示满意。",
    "已协调相关单位完成维修，并建立定期巡查机制。",
    "已按要求完成征集，共收集意见建议{d}条，已汇总上报。",
)
_EVIDENCE = ("现场照片", "整改前后对比照片", "办理情况报告", "回访记录")


def task_report(ctx: Context) -> Record:
    status = _REPORT_STATUS(ctx.rng)
    record: Record = {
        "task_id": ctx.ref("task"),
        "task_rev": 1 if ctx.chance(0.7) else ctx.between(2, 3),
        "status": status,
    }
    if status == "rejected" or ctx.chance(0.85):
        note = ctx.pick(_NOTES[status])
        record["note"] = note.format(d=ctx.between(3, 15), unit=UNITS[ctx.pick(UNIT_CODES)])
    record["reported_at"] = timestamp(ctx.moment(0, 299))
    if ctx.chance({"done": 0.6, "in_progress": 0.2}.get(status, 0.0)):
        record["evidence"] = ctx.files(_EVIDENCE, 3)
    if status in ("done", "in_progress") and ctx.chance(0.5):
        record["record_ref"] = {"contract": "opinion", "id": ctx.ref("opinion")}
    if status == "done" and ctx.chance(0.9):
        record["resolution"] = ctx.pick(_RESOLUTIONS).format(d=ctx.between(5, 80))
    return record


# --- node certificate -------------------------------------------------------------------------

_HUB_TIERS = {1: "province", 2: "city", 3: "county"}


@functools.lru_cache(maxsize=256)
def sample_signer(seed: int, node: str, rotation: int = 0) -> Signer:
    """The sample key of ``node``: a pure function of the seed, the node and a rotation count."""
    material = f"guantong-sample-key\x1f{seed}\x1f{node}\x1f{rotation}".encode()
    return Signer.from_seed(hashlib.sha256(material).digest())


def node_cert(ctx: Context) -> Record:
    """Record 0 is the origin's own certificate; the rest are issued by the origin's hub."""
    parts = ctx.origin.split(".")
    if ctx.index == 0:
        node = ctx.origin
        issuer = ".".join(parts[:-1]) or ctx.origin  # the province root is self-signed
        tier = "station" if ctx.at_station else _HUB_TIERS[len(parts)]
        subject = sample_signer(ctx.seed, node)
    else:
        issuer = ctx.hub
        if ctx.chance(0.2):
            node, tier = ctx.unit(), "unit"
        else:
            node, tier = f"{ctx.hub}.s{ctx.between(1, 40):03d}", "station"
        subject = sample_signer(ctx.seed, node, ctx.index)  # a later certificate: a new key
    not_before = ctx.moment(0, 280)
    validity = 365 if tier == "unit" else 730
    cert = {
        "node": node,
        "tier": tier,
        "key": subject.public_b64u,
        "key_id": subject.key_id,
        "issuer": issuer,
        "not_before": timestamp(not_before),
        "not_after": timestamp(not_before + validity * DAY),
    }
    record: Record = sample_signer(ctx.seed, issuer).sign_object(cert)
    revoked = ctx.chance(0.07)
    record["status"] = "revoked" if revoked else "active"
    record["revoked_from"] = (
        timestamp(ctx.later(not_before, 10 * DAY, 200 * DAY)) if revoked else None
    )
    return record


# --- data quality -----------------------------------------------------------------------------

_PROBLEMS = (  # contract, version, code, path, message
    ("opinion", "1.1", "contract_violation", "/data/rating", "rating 的值 6 大于最大值 5"),
    (
        "opinion",
        "1.0",
        "contract_violation",
        "/data/category",
        "category 的值 elderly_care 不在 1.0 版允许的取值中",
    ),
    (
        "opinion",
        "1.1",
        "contract_violation",
        "/data/received_at",
        "received_at 不是带毫秒的 UTC 时间：2026-03-01 08:00:00",
    ),
    (
        "opinion",
        "1.1",
        "contract_violation",
        "/data/reporter_phone",
        "reporter_phone 不是有效的手机号码",
    ),
    ("opinion", "1.1", "contract_violation", "/data", "缺少必填字段 status"),
    (
        "opinion",
        "1.1",
        "contract_violation",
        "/data/attachments/0/sha256",
        "sha256 应为 64 位小写十六进制",
    ),
    ("reception", "1.0", "contract_violation", "/data/deputy_ids", "deputy_ids 至少需要 1 项"),
    (
        "livelihood_project",
        "1.0",
        "contract_violation",
        "/data/budget",
        "budget 应为保留两位小数的十进制字符串",
    ),
    (
        "duty_activity",
        "1.0",
        "contract_violation",
        "/data/kind",
        "kind 的值 visit 不在允许的取值中",
    ),
    (
        "station",
        "1.0",
        "contract_violation",
        "/data/region_code",
        "region_code 应为 6 位或 12 位数字",
    ),
    ("opinion", "1.2", "unknown_version", "", "契约 opinion 没有 1.2 版"),
    ("visit_log", "1.0", "unknown_contract", "", "未知的数据契约 visit_log"),
)
_QUALITY_STATUS = Weighted([("open", 40), ("acknowledged", 30), ("fixed", 30)])


def data_quality(ctx: Context) -> Record:
    contract, version, code, path, message = ctx.pick(_PROBLEMS)
    status = _QUALITY_STATUS(ctx.rng)
    seq = ctx.between(1, 50_000)
    raised = ctx.moment(0, 290, office=False)
    record: Record = {
        "origin": ctx.station(),
        "seq": seq,
        "entry_hash": f"{ctx.rng.getrandbits(256):064x}",
        "contract": contract,
        "version": version,
        "code": code,
        "path": path,
        "message": message,
        "raised_at": timestamp(raised),
        "status": status,
    }
    if status == "open":
        return record
    acknowledged = ctx.later(raised, 10 * 60_000, 5 * DAY)
    record["acknowledged_at"] = timestamp(acknowledged)
    if status == "fixed":
        record["fixed_at"] = timestamp(ctx.later(acknowledged, 10 * 60_000, 5 * DAY))
        record["fixed_by_seq"] = seq + ctx.between(1, 500)
    return record
