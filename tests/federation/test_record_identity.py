"""A record is named by its origin and its id (migration 2026_12_07_0013): an id another
origin reuses is another record at every hub; lookups by id alone find each, and an id
a person types that names another node's record is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import event
from typer.testing import CliRunner

from node.cli import app as cli
from schemas.errors import ErrorCode, GuantongError
from tests.federation.harness import Federation

pytestmark = pytest.mark.anyio


async def _two_stations_one_id(fed: Federation) -> str:
    """Stations s1 and s2 each hold an opinion of the same id, both relayed to the county
    and the city."""
    fed.add("js.wx.jy")
    s1, s2 = fed.add("js.wx.jy.s1"), fed.add("js.wx.jy.s2")
    (record_id,) = fed.write(s1.id, 1, seed=1)
    (view,) = s1.list("opinion")
    assert view.data is not None
    assert view.data["status"] != "rejected"
    s2.put("opinion", [(None, {**view.data, "id": record_id, "status": "rejected"})])
    for node_id in (s1.id, s2.id, "js.wx.jy"):
        assert (await fed.sync(node_id)).rejected == {}
    return record_id


async def test_hubs_hold_each_origins_record_and_find_both(fed: Federation) -> None:
    record_id = await _two_stations_one_id(fed)
    for hub_id in ("js.wx.jy", "js.wx"):
        hub = fed.nodes[hub_id]
        found = hub.find(record_id)
        assert [(v.origin, (v.data or {}).get("status")) for v in found] == [
            ("js.wx.jy.s1", fed.nodes["js.wx.jy.s1"].get("opinion", record_id).data["status"]),
            ("js.wx.jy.s2", "rejected"),
        ]
        assert [v.origin for v in hub.find(record_id, under="js.wx.jy.s2")] == ["js.wx.jy.s2"]
        assert hub.find(record_id, contract="suggestion") == []
        with pytest.raises(GuantongError) as info:
            hub.get("opinion", record_id)
        assert info.value.code is ErrorCode.AMBIGUOUS_RECORD
        assert info.value.details["origins"] == ["js.wx.jy.s1", "js.wx.jy.s2"]
        assert hub.get("opinion", record_id, origin="js.wx.jy.s2").seq == 1
        with pytest.raises(GuantongError) as info:
            hub.get("opinion", record_id, origin="js.wx.jy.s3")
        assert info.value.code is ErrorCode.NOT_FOUND
    station = fed.nodes["js.wx.jy.s1"]  # a station holds its own only: the bare id is enough
    assert station.get("opinion", record_id).origin == station.id


async def test_own_private_fields_stay_with_the_own_record(fed: Federation) -> None:
    """The originals of private fields are held per id for own records only: a child's
    record of the same id never shows the hub's."""
    record_id = await _two_stations_one_id(fed)
    county = fed.nodes["js.wx.jy"]
    child = county.get("opinion", record_id, origin="js.wx.jy.s1")
    assert child.data is not None and "reporter_name" not in child.data
    county.put("opinion", [(None, {**child.data, "id": record_id, "reporter_name": "王五"})])
    own = county.get("opinion", record_id, origin=county.id)
    assert own.data is not None and own.data["reporter_name"] == "王五"
    again = county.get("opinion", record_id, origin="js.wx.jy.s1")
    assert again.data == child.data
    listed = {v.origin: v.data for v in county.list("opinion") if v.id == record_id}
    assert "reporter_name" not in (listed["js.wx.jy.s1"] or {})
    assert (listed[county.id] or {})["reporter_name"] == "王五"


async def test_an_id_of_another_nodes_record_is_refused_where_people_write(
    fed: Federation, tmp_path: Path
) -> None:
    record_id = await _two_stations_one_id(fed)
    county = fed.nodes["js.wx.jy"]
    assert county.foreign([record_id, "00000000-0000-7000-8000-000000000000"]) == {
        record_id: "js.wx.jy.s1"
    }
    with pytest.raises(GuantongError) as info:
        county.refuse_foreign([(1, {"text": "new"}), (2, {"id": record_id})])
    assert info.value.code is ErrorCode.NOT_RECORD_OWNER
    assert info.value.details == {"line": 2} and "js.wx.jy.s1" in info.value.message
    # the CLI refuses before writing anything
    (view,) = [v for v in county.find(record_id) if v.origin == "js.wx.jy.s1"]
    source = tmp_path / "records.ndjson"
    source.write_text(f'{{"id": "{record_id}", "content": "x"}}\n', encoding="utf-8")
    before = county.log.head()
    result = CliRunner().invoke(
        cli,
        ["put", "opinion", "-f", str(source), "--offline", "--json"],
        env={"GUANTONG_HOME": str(county.settings.home)},
    )
    assert result.exit_code != 0 and "not_record_owner" in result.output, result.output
    assert county.log.head() == before
    env = {"GUANTONG_HOME": str(county.settings.home)}
    bare = CliRunner().invoke(cli, ["get", "opinion", record_id], env=env)
    assert bare.exit_code != 0 and "ambiguous_record" in bare.output, bare.output
    named = CliRunner().invoke(
        cli, ["get", "opinion", record_id, "--origin", "js.wx.jy.s2"], env=env
    )
    assert named.exit_code == 0 and orjson.loads(named.stdout)["origin"] == "js.wx.jy.s2"
    # once the node holds a record of its own under that id, it is its own to write
    data = {k: v for k, v in (view.data or {}).items() if k != "id"}
    county.put("opinion", [(None, {**data, "id": record_id})])
    assert county.foreign([record_id]) == {}
    county.refuse_foreign([(1, {"id": record_id})])


async def test_a_lookup_by_id_alone_probes_the_key_and_scans_no_records(
    fed: Federation,
) -> None:
    """At a province, records are tens of millions: each statement ``find`` and
    ``foreign`` run searches the key (origin and id), none reads the records through."""
    record_id = await _two_stations_one_id(fed)
    county = fed.nodes["js.wx.jy"]
    if county.store.engine.dialect.name != "sqlite":
        pytest.skip("the plan is checked on SQLite; PostgreSQL's depends on its statistics")
    statements: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if "records" in sql:
            statements.append((sql, params))

    event.listen(county.store.engine, "before_cursor_execute", note)
    try:
        assert len(county.find(record_id)) == 2
        assert county.foreign([record_id]) == {record_id: "js.wx.jy.s1"}
    finally:
        event.remove(county.store.engine, "before_cursor_execute", note)
    assert statements
    with county.store.read() as conn:
        for sql, params in statements:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            steps = [str(step[-1]) for step in plan]
            assert not any(s.startswith("SCAN records") for s in steps), (sql, steps)
            assert any(s.startswith("SEARCH records") for s in steps), (sql, steps)
