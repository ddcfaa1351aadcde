"""The sample generator (contracts.samples): valid, deterministic, realistic, consistent."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.samples import SAMPLE_CONTRACTS, sample_records
from schemas.ids import is_node_id, is_uuid
from schemas.signing import b64u_decode, verify_object

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "contracts" / "bundle"
INDEX = json.loads((BUNDLE / "index.json").read_text(encoding="utf-8"))
VERSIONS = [(name, v) for name, info in INDEX["contracts"].items() for v in info["versions"]]
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
OPINION_TIMES = ("received_at", "accepted_at", "assigned_at", "resolved_at", "rated_at")
# Fields an opinion has exactly when its status implies them (rating fields: only when closed).
OPINION_STAGES = {
    "received": {"received_at"},
    "accepted": {"received_at", "accepted_at"},
    "assigned": {"received_at", "accepted_at", "assigned_at", "handling_unit"},
    "in_progress": {"received_at", "accepted_at", "assigned_at", "handling_unit"},
    "resolved": {
        "received_at", "accepted_at", "assigned_at", "handling_unit", "resolved_at", "resolution",
    },
    "closed": {
        "received_at", "accepted_at", "assigned_at", "handling_unit", "resolved_at", "resolution",
        "closed_at",
    },
    "rejected": {"received_at", "rejected_at", "rejection_reason"},
}  # fmt: skip
LIFECYCLE = {f for fields in OPINION_STAGES.values() for f in fields} | {"rating", "rated_at"}


@cache
def validator(contract: str, version: str) -> Any:
    schema = json.loads((BUNDLE / contract / f"{version}.json").read_text(encoding="utf-8"))
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def data_of(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "id"}


def problems(contract: str, version: str, records: list[dict[str, Any]]) -> list[str]:
    check = validator(contract, version)
    return [
        f"record {i}: {err}"
        for i, record in enumerate(records)
        for err in check.iter_errors(data_of(record))
    ]


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def dumps(records: list[dict[str, Any]]) -> str:
    return json.dumps(records, ensure_ascii=False, sort_keys=False)


# --- coverage and validity ---------------------------------------------------------------------


def test_every_bundle_contract_has_a_generator() -> None:
    assert set(SAMPLE_CONTRACTS) == set(INDEX["contracts"])
    assert len(SAMPLE_CONTRACTS) == len(set(SAMPLE_CONTRACTS))


@pytest.mark.parametrize(("contract", "version"), VERSIONS)
def test_records_validate(contract: str, version: str) -> None:
    records = list(sample_records(contract, 300, version=version))
    assert len(records) == 300
    assert problems(contract, version, records) == []


@pytest.mark.parametrize("origin", ["js", "js.wx", "js.wx.jy", "js.wx.jy.hs.s07", "js.wx.jy.s1"])
@pytest.mark.parametrize(("contract", "version"), VERSIONS)
def test_records_validate_at_any_tier(contract: str, version: str, origin: str) -> None:
    records = list(sample_records(contract, 40, seed=5, version=version, origin=origin))
    assert problems(contract, version, records) == []


node_ids = st.lists(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True), min_size=1, max_size=6
).map(".".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(origin=node_ids, seed=st.integers(min_value=-(2**70), max_value=2**70))
def test_records_validate_for_any_origin_and_seed(origin: str, seed: int) -> None:
    for contract, version in VERSIONS:
        records = list(sample_records(contract, 5, seed=seed, version=version, origin=origin))
        assert problems(contract, version, records) == []


@pytest.mark.parametrize("contract", SAMPLE_CONTRACTS)
def test_ids_floats_and_size(contract: str) -> None:
    records = list(sample_records(contract, 300, seed=11))
    ids = [r["id"] for r in records]
    assert all(UUID4.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    for record in records:
        assert not [v for v in walk(record) if isinstance(v, float)], record
        assert len(json.dumps(record, ensure_ascii=False).encode("utf-8")) < 60 * 1024


def test_default_version_is_newest_1x() -> None:
    assert dumps(list(sample_records("opinion", 50))) == dumps(
        list(sample_records("opinion", 50, version="1.1"))
    )


# --- errors ------------------------------------------------------------------------------------


def test_unknown_contract() -> None:
    with pytest.raises(ValueError, match=r"^no sample generator for contract 'visit_log'$"):
        sample_records("visit_log", 1)


@pytest.mark.parametrize("version", ["1.9", "3.0", "x", ""])
def test_unknown_version_fails_at_the_call(version: str) -> None:
    with pytest.raises(ValueError, match="opinion"):
        sample_records("opinion", 1, version=version)


@pytest.mark.parametrize(
    "kwargs", [{"count": -1}, {"count": 1, "origin": "JS.wx"}, {"count": 1, "origin": ""}]
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sample_records("deputy", **kwargs)


def test_zero_records() -> None:
    assert list(sample_records("opinion", 0)) == []


# --- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("contract", SAMPLE_CONTRACTS)
def test_deterministic(contract: str) -> None:
    first = dumps(list(sample_records(contract, 100, seed=42)))
    assert first == dumps(list(sample_records(contract, 100, seed=42)))
    assert first != dumps(list(sample_records(contract, 100, seed=43)))
    assert first != dumps(list(sample_records(contract, 100, seed=42, origin="js.wx.jy.s002")))
    # A shorter run is a prefix of a longer one.
    assert dumps(list(sample_records(contract, 30, seed=42))) == dumps(
        list(sample_records(contract, 100, seed=42))[:30]
    )


def _digest_script() -> str:
    return (
        "import hashlib, json\n"
        "from contracts.samples import SAMPLE_CONTRACTS, sample_records\n"
        "h = hashlib.sha256()\n"
        "for c in SAMPLE_CONTRACTS:\n"
        "    for r in sample_records(c, 40, seed=9):\n"
        "        h.update(json.dumps(r, ensure_ascii=False).encode())\n"
        "print(h.hexdigest())\n"
    )


def test_independent_of_hash_randomisation() -> None:
    """Byte-identical output in fresh interpreters with different string-hash salts."""
    expected = hashlib.sha256()
    for contract in SAMPLE_CONTRACTS:
        for record in sample_records(contract, 40, seed=9):
            expected.update(json.dumps(record, ensure_ascii=False).encode())
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        out = subprocess.run(
            [sys.executable, "-c", _digest_script()],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expected.hexdigest()


def test_opinion_versions_share_one_stream() -> None:
    """1.0, 1.1 and 2.0 samples are the same records; 1.1 upcasts to 2.0 where 1.x can say it."""
    schema = json.loads((BUNDLE / "opinion" / "2.0.json").read_text(encoding="utf-8"))
    table = schema["x-upcast-from-1"]["category"]
    v10, v11, v20 = (list(sample_records("opinion", 500, version=v)) for v in ("1.0", "1.1", "2.0"))
    assert [r["id"] for r in v10] == [r["id"] for r in v11] == [r["id"] for r in v20]
    assert [r["content"] for r in v10] == [r["content"] for r in v20]
    parent = schema["properties"]["subcategory"]["x-category"]
    assert all(parent[r["subcategory"]] == r["category"] for r in v20)
    assert len({r["subcategory"] for r in v20}) == len(parent)
    matched = 0
    for old, new in zip(v11, v20, strict=True):
        category, subcategory = table[old["category"]]
        if subcategory != new["subcategory"]:  # housing, utilities, ...: new in 2.0
            continue
        matched += 1
        assert {**old, "category": category, "subcategory": subcategory} == new
    assert matched > 300


# --- realism -----------------------------------------------------------------------------------


def test_opinion_distributions_and_lifecycle() -> None:
    records = list(sample_records("opinion", 1000, seed=3))
    status = Counter(r["status"] for r in records)
    channel = Counter(r["channel"] for r in records)
    assert status["resolved"] + status["closed"] >= 500
    assert 10 <= status["rejected"] <= 150
    assert status["in_progress"] + status["assigned"] >= 50
    assert channel["qr"] + channel["visit"] >= 600
    assert len(channel) == 4
    ratings = [r["rating"] for r in records if "rating" in r]
    assert len(ratings) >= 300
    assert sum(1 for x in ratings if x >= 4) >= 0.7 * len(ratings)
    assert set(ratings) <= {1, 2, 3, 4, 5}
    for r in records:
        present = {k for k in r if k in LIFECYCLE}
        expected = OPINION_STAGES[r["status"]]
        if "rating" in r:
            assert r["status"] == "closed"
            expected = expected | {"rating", "rated_at"}
        assert present == expected, r
        assert "rating_comment" not in r or "rating" in r
        times = [r[k] for k in OPINION_TIMES if k in r]
        assert times == sorted(times) and len(set(times)) == len(times), r
        if "closed_at" in r:
            assert r["closed_at"] >= r["resolved_at"]
        if "rejected_at" in r:
            assert r["rejected_at"] > r["received_at"]
        if "rated_at" in r:
            assert r["rated_at"] <= r["closed_at"]
        for office_work in ("accepted_at", "assigned_at", "resolved_at", "rejected_at"):
            if office_work in r:  # 08:30-17:30 China time
                assert "00:30" <= r[office_work][11:16] < "09:30", r


def test_opinions_have_reporters_with_phone_numbers() -> None:
    records = list(sample_records("opinion", 1000, seed=4))
    citizens = [r for r in records if r["channel"] != "deputy_found"]
    assert len(citizens) >= 800
    for r in citizens:
        assert MOBILE.match(r["reporter_phone"]), r
        assert r["reporter_key"] == r["reporter_phone"]
        assert r["reporter_name"]
    for r in records:
        if r["channel"] == "deputy_found":
            assert "reporter_phone" not in r and "deputy_id" in r
    repeated = Counter(r["reporter_phone"] for r in citizens)
    assert max(repeated.values()) >= 2  # some citizens report more than once


def test_opinion_text_is_chinese_and_varied() -> None:
    records = list(sample_records("opinion", 1000, seed=5))
    assert len({r["content"] for r in records}) >= 900
    assert len({r.get("title") for r in records}) >= 40
    assert any("路灯不亮" in r.get("title", "") for r in records)
    for r in records:
        assert re.search(r"[\u4e00-\u9fff]", r["content"])


def test_deputies_and_stations() -> None:
    deputies = list(sample_records("deputy", 300, seed=6))
    levels = Counter(d["level"] for d in deputies)
    assert levels["township"] > levels["national"]
    assert all(MOBILE.match(d["phone"]) for d in deputies if "phone" in d)
    stations = list(sample_records("station", 300, seed=6))
    assert stations[0]["node"] == "js.wx.jy.s001"
    assert stations[0]["name"] == "江阴市澄江街道代表联络站"
    nodes = [s["node"] for s in stations]
    assert len(set(nodes)) == len(nodes)
    assert all(n.startswith("js.wx.jy.") for n in nodes)
    hub = list(sample_records("station", 3, origin="js.wx.jy"))
    assert hub[0]["node"] == "js.wx.jy" and hub[0]["level"] == "county"


def test_livelihood_projects_are_coherent() -> None:
    for p in sample_records("livelihood_project", 300, seed=7):
        if "spent" in p:
            assert int(p["spent"].replace(".", "")) <= int(p["budget"].replace(".", ""))
        dues = [m["due"] for m in p.get("milestones", [])]
        assert dues == sorted(dues)
        done = [m for m in p.get("milestones", []) if m.get("done")]
        if p["status"] == "completed":
            assert p["progress"] == 100 and len(done) == len(dues)
        if p["status"] == "planned":
            assert p["progress"] == 0 and not done
        if p["status"] == "delayed" and dues:
            assert any(m.get("done") is None for m in p["milestones"])


def test_suggestion_lifecycle() -> None:
    order = ("submitted_at", "accepted_at", "assigned_at", "replied_at", "evaluated_at")
    for s in sample_records("suggestion", 300, seed=8):
        times = [s[k] for k in order if k in s]
        assert times == sorted(times)
        assert ("satisfaction" in s) == (s["status"] == "evaluated")
        assert ("reply" in s) == (s["status"] in ("replied", "evaluated"))
        assert ("withdrawn_at" in s) == (s["status"] == "withdrawn")
        if s["kind"] == "motion":
            assert len(s["deputy_ids"]) >= 10


# --- references --------------------------------------------------------------------------------


def _ids(contract: str, count: int, seed: int, origin: str = "js.wx.jy.s001") -> set[str]:
    return {r["id"] for r in sample_records(contract, count, seed=seed, origin=origin)}


@pytest.mark.parametrize("origin", ["js.wx.jy.s001", "js.wx.jy.s003"])
def test_references_point_at_records_of_the_same_origin_and_seed(origin: str) -> None:
    seed = 12
    deputies = _ids("deputy", 20, seed, origin)
    opinions = _ids("opinion", 200, seed, origin)
    suggestions = _ids("suggestion", 50, seed, origin)
    projects = _ids("livelihood_project", 20, seed, origin)
    items = _ids("supervision_item", 50, seed, origin)

    def run(contract: str) -> list[dict[str, Any]]:
        return list(sample_records(contract, 300, seed=seed, origin=origin))

    assert {o["deputy_id"] for o in run("opinion") if "deputy_id" in o} <= deputies
    for s in run("suggestion"):
        assert set(s["deputy_ids"]) <= deputies
    for r in run("reception"):
        assert set(r["deputy_ids"]) <= deputies
        assert set(r.get("opinion_ids", [])) <= opinions
        assert len(r.get("opinion_ids", [])) <= r["issues_collected"] <= r["visitor_count"]
    for a in run("duty_activity"):
        assert a["deputy_id"] in deputies
        assert a.get("opinion_id", next(iter(opinions))) in opinions
        assert a.get("suggestion_id", next(iter(suggestions))) in suggestions
    pools = {"opinion": opinions, "livelihood_project": projects, "supervision_item": items}
    for w in run("warning"):
        subject = w["subject"]
        assert subject["contract"] == "task" or subject["id"] in pools[subject["contract"]]
    for t in run("task_report"):
        if "record_ref" in t:
            assert t["record_ref"]["id"] in opinions


@pytest.mark.parametrize("contract", SAMPLE_CONTRACTS)
def test_node_references_are_in_the_origins_county(contract: str) -> None:
    schema = json.loads((BUNDLE / contract / "1.0.json").read_text(encoding="utf-8"))
    node_fields = {
        name
        for name, prop in schema["properties"].items()
        if prop.get("x-ref") == "node" or prop.get("items", {}).get("x-ref") == "node"
    }
    uuid_fields = {n for n, p in schema["properties"].items() if p.get("format") == "uuid"}
    for record in sample_records(contract, 200, seed=13, origin="js.wx.jy.s005"):
        for name in node_fields & set(record):
            values = record[name] if isinstance(record[name], list) else [record[name]]
            for value in values:
                assert is_node_id(value) and value.split(".")[:3] == ["js", "wx", "jy"], value
        for name in uuid_fields & set(record):
            assert is_uuid(record[name])


def test_certificates_verify_up_the_chain() -> None:
    county = next(sample_records("node_cert", 1, seed=14, origin="js.wx.jy"))
    station = next(sample_records("node_cert", 1, seed=14, origin="js.wx.jy.s001"))
    assert (county["node"], county["issuer"]) == ("js.wx.jy", "js.wx")
    assert (station["node"], station["issuer"]) == ("js.wx.jy.s001", "js.wx.jy")
    county_key = b64u_decode(county["key"])
    cert_fields = ("node", "tier", "key", "key_id", "issuer", "not_before", "not_after", "sig")

    def cert(record: dict[str, Any]) -> dict[str, Any]:
        return {k: record[k] for k in cert_fields}

    assert verify_object(cert(station), county_key)
    for issued in list(sample_records("node_cert", 100, seed=14, origin="js.wx.jy"))[1:]:
        assert issued["issuer"] == "js.wx.jy"
        assert verify_object(cert(issued), county_key)
        assert (issued["revoked_from"] is None) == (issued["status"] == "active")
        assert hashlib.sha256(b64u_decode(issued["key"])).hexdigest()[:16] == issued["key_id"]
