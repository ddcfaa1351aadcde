"""Certificates flow up, keys rotate, enrollment works by files from the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from node.auth import NodeAuth
from node.cli import app
from node.enrollment import rotate_online
from node.keyring import cert_record
from node.keys import create_key
from node.runtime import Node
from node.tasks import revoke_node
from node.verify import verify_log
from schemas.certs import Certificate, issue_certificate
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier
from schemas.signing import Signer
from schemas.times import format_time
from tests.conftest import FakeClock
from tests.federation.harness import Federation, reopen

pytestmark = pytest.mark.anyio
runner = CliRunner()


async def test_province_learns_every_key_through_the_logs(fed: Federation) -> None:
    fed.add("js.wx.jy.s1")
    province = fed.nodes["js"]
    assert province.keyring.lookup(fed.nodes["js.wx.jy.s1"].signer.key_id) is None
    fed.write("js.wx.jy.s1", 2)
    for node_id in ("js.wx.jy.s1", "js.wx.jy", "js.wx"):
        assert (await fed.sync(node_id)).rejected == {}
    known = province.keyring.lookup(fed.nodes["js.wx.jy.s1"].signer.key_id)
    assert known is not None and known.cert is not None and known.cert.issuer == "js.wx.jy"
    assert list(verify_log(province.log)) == []


async def test_lookup_many_reads_the_same_keys_as_lookup(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        fed.add(f"js.wx.jy.s{n}")
    hub = fed.nodes["js.wx.jy"]
    kids = [fed.nodes[f"js.wx.jy.s{n}"].signer.key_id for n in range(3)]
    unknown, malformed = "0" * 16, "not a key id"
    monkeypatch.setattr("node.keyring._MANY", 2)  # several statements in one transaction
    found = hub.keyring.lookup_many([*kids, kids[0], unknown, malformed])
    assert sorted(found) == sorted(kids)
    for kid in kids:
        assert found[kid] == hub.keyring.lookup(kid)
    assert hub.keyring.lookup_many([unknown, malformed]) == {}


async def test_rotation_keeps_history_verifiable(fed: Federation, tmp_path: Path) -> None:
    station = fed.add("js.wx.jy.s1")
    old_key = station.signer.key_id
    fed.write(station.id, 3)
    await fed.sync(station.id)
    pending = tmp_path / "new.key"
    fresh = create_key(pending)
    async with fed.client("js.wx.jy", caller=station.id) as client:
        cert = await rotate_online(station, fresh, client)
    station.adopt_key(fresh, pending)
    assert (cert.key_id, cert.issuer) == (fresh.key_id, "js.wx.jy")
    fed.clock.advance(seconds=1)
    fed.write(station.id, 2, seed=1)
    assert (await fed.sync(station.id)).rejected == {}
    for node_id in ("js.wx.jy", "js.wx"):
        assert (await fed.sync(node_id)).rejected == {}
    province = fed.nodes["js"]
    assert province.log.head(station.id).seq == 5  # type: ignore[union-attr]
    heads = {h.seq: h.signed for h in [province.log.head(station.id)] if h}
    assert heads[5] is not None and heads[5].key_id == fresh.key_id
    assert province.keyring.lookup(old_key) is not None
    assert list(verify_log(province.log)) == []  # entries signed by the old key still verify


def _gt(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_offline_enrollment_by_files_then_revocation(tmp_path: Path) -> None:
    county, station = tmp_path / "county", tmp_path / "station"
    province = tmp_path / "province"
    _gt("init", "--id", "js", "--tier", "province", "--home", str(province))
    for home, node_id, tier, parent in (
        (tmp_path / "city", "js.wx", "city", province),
        (county, "js.wx.jy", "county", tmp_path / "city"),
        (station, "js.wx.jy.s1", "station", county),
    ):
        _gt(
            "init",
            "--id",
            node_id,
            "--tier",
            tier,
            "--parent",
            "http://127.0.0.1:9",
            "--home",
            str(home),
        )
        token = _gt("token", "create", node_id, "--tier", tier, "--home", str(parent)).strip()
        request, answer = tmp_path / f"{node_id}.req", tmp_path / f"{node_id}.ans"
        _gt("enroll", "--token", token, "--request-file", str(request), "--home", str(home))
        _gt("token", "answer", str(request), "--out", str(answer), "--home", str(parent))
        enrolled = json.loads(
            _gt(
                "enroll",
                "--token",
                token,
                "--response-file",
                str(answer),
                "--home",
                str(home),
                "--json",
            )
        )
        assert enrolled["node"] == node_id
        first = json.loads(answer.read_text())
        again = tmp_path / f"{node_id}.again"  # the answer file was lost: answered again
        _gt("token", "answer", str(request), "--out", str(again), "--home", str(parent))
        assert json.loads(again.read_text())["cert"] == first["cert"]
    assert "province_secret" in (station / "node.toml").read_text()
    out = _gt("revoke", "js.wx.jy.s1", "--home", str(county))
    assert "revoked 1 key(s) of js.wx.jy.s1" in out
    listed = json.loads(_gt("list", "node_cert", "--json", "--home", str(county)).splitlines()[0])
    assert listed["data"]["status"] == "revoked"
    revoked = runner.invoke(  # the station's request once more: its key is revoked now
        app, ["token", "answer", str(request), "--out", str(answer), "--home", str(county)]
    )
    assert revoked.exit_code == 1 and revoked.stderr.startswith("error: token_used:")


async def test_only_a_hub_certifies_and_only_its_direct_children(fed: Federation) -> None:
    from datetime import timedelta

    from schemas.certs import issue_certificate
    from schemas.errors import ErrorCode, GuantongError
    from schemas.ids import Tier
    from schemas.signing import Signer
    from schemas.times import format_time

    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    rogue = Signer.generate()
    now = fed.clock()

    def cert(issuer_node: object, node_id: str) -> object:
        signer = issuer_node.signer  # type: ignore[attr-defined]
        return issue_certificate(
            signer,
            issuer_id=issuer_node.id,
            node=node_id,
            tier=Tier.STATION,  # type: ignore[attr-defined]
            public_raw=rogue.public_raw,
            not_before=format_time(now),
            not_after=format_time(now + timedelta(days=1)),
        )

    with pytest.raises(GuantongError) as info:
        county.keyring.add_certificate(cert(station, "js.wx.jy.s1.x"))  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.FORBIDDEN  # a station is not a hub
    with pytest.raises(GuantongError) as info:
        fed.nodes["js.wx"].keyring.add_certificate(cert(fed.nodes["js.wx"], "js.wx.jy.s9"))  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.NOT_IN_SUBTREE  # a grandchild is its own parent's


async def test_reports_count_only_from_the_tasks_recipients(fed: Federation) -> None:
    from node.log import Write
    from node.tasks import issue_task, task_views

    county = fed.add("js.wx.jy")
    fed.add("js.wx.jy.s1")
    sibling = fed.add("js.wx.jy.s2")
    task = issue_task(county, target="js.wx.jy.s1", kind="assign", payload={})
    forged = {"task_id": task.id, "task_rev": 1, "status": "done", "reported_at": fed.now()}
    sibling.log.append(
        [Write("task_report", "1.0", "00000000-0000-7000-8000-0000000000ee", data=forged)]
    )
    await fed.cascade_up(sibling.id)
    (view,) = task_views(county, issued_here=True)
    assert (view.state, view.history) == ("issued", [])


async def _a_city_and_a_county_of_its_sibling(fed: Federation) -> tuple[Node, Node, Node]:
    """The province knows js.b.x's key from js.b's log; js.a is a sibling city."""
    fed.add("js.a")
    victim = fed.add("js.b.x")
    province = fed.nodes["js"]
    assert (await fed.sync("js.b")).rejected == {}
    known = province.keyring.lookup(victim.signer.key_id)
    assert known is not None and known.node == "js.b.x" and known.revoked_from is None
    return province, fed.nodes["js.a"], victim


def _foreign_certificate(city: Node, victim: Node, *, not_before: str) -> Certificate:
    """js.a certifying, for a made-up child js.a.fake, the public key of js.b.x."""
    return issue_certificate(
        city.signer,
        issuer_id="js.a",
        node="js.a.fake",
        tier=Tier.COUNTY,
        public_raw=victim.signer.public_raw,
        not_before=not_before,
        not_after="2030-01-01T00:00:00.000Z",
    )


async def test_a_hub_cannot_certify_another_nodes_key_for_a_child_of_its_own(
    fed: Federation,
) -> None:
    """Public keys are public: js.a certifying js.b.x's key for a made-up child would,
    taken up, give the key to that child and have js.b.x's authentic entries refused."""
    province, city, victim = await _a_city_and_a_county_of_its_sibling(fed)
    fake = _foreign_certificate(city, victim, not_before=fed.now())
    city.put("node_cert", [(None, cert_record(fake, issuer="js.a"))])
    assert (await fed.sync("js.a")).rejected == {}  # its record is stored, not learnt
    known = province.keyring.lookup(victim.signer.key_id)
    assert known is not None and known.node == "js.b.x"
    with pytest.raises(GuantongError) as refused:
        province.keyring.add_certificate(fake)
    assert refused.value.code is ErrorCode.FORBIDDEN
    fed.write("js.b.x", 1)
    assert (await fed.sync("js.b.x")).rejected == {}
    assert (await fed.sync("js.b")).rejected == {}
    held = province.log.head("js.b.x")
    assert held is not None and held.seq >= 1


async def test_a_hub_cannot_revoke_the_key_of_a_node_outside_its_subtree(
    fed: Federation,
) -> None:
    """A revocation names the node it revokes; js.a naming its own made-up child but
    carrying js.b.x's key revokes nothing at the province."""
    province, city, victim = await _a_city_and_a_county_of_its_sibling(fed)
    fake = _foreign_certificate(city, victim, not_before="2020-01-01T00:00:00.000Z")
    record = cert_record(
        fake, issuer="js.a", status="revoked", revoked_from="2020-01-01T00:00:00.000Z"
    )
    city.put("node_cert", [(None, record)])
    assert (await fed.sync("js.a")).rejected == {}
    known = province.keyring.lookup(victim.signer.key_id)
    assert known is not None and known.revoked_from is None


@pytest.mark.parametrize("revoked_in", [timedelta(0), timedelta(hours=1)])
async def test_a_revoked_key_gets_no_successor_certified(
    fed: Federation, tmp_path: Path, revoked_in: timedelta
) -> None:
    """A thief holding a key revoked now signs /v1/rotate dated 60 s earlier (inside the
    300 s window, before `revoked_from`), or rotates before a `--from` in the future: any
    revocation on record of the signing key refuses the rotation, else the new certificate
    is one nobody revoked, and the thief pushes as the station again."""
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    fed.clock.advance(minutes=10)
    revoke_node(county, station.id, revoked_from=format_time(fed.clock() + revoked_in))
    fresh = create_key(tmp_path / "fresh.key")
    earlier = FakeClock(fed.clock() - timedelta(seconds=60))  # the thief's backdated clock
    auth = NodeAuth(station.id, station.signer, earlier)
    transport = httpx.ASGITransport(app=fed.app(county.id))
    async with httpx.AsyncClient(transport=transport, base_url="http://js.wx.jy", auth=auth) as c:
        with pytest.raises(GuantongError) as refused:
            await rotate_online(station, fresh, c)
    assert refused.value.code is ErrorCode.REVOKED_KEY
    assert county.keyring.lookup(fresh.key_id) is None


async def test_a_station_rotates_after_its_county_rotated(fed: Federation, tmp_path: Path) -> None:
    """The rotation answer carries the chain, as enrollment's: a station that does not know
    its county's new key yet learns it from there (verified up to the root). It called
    add_certificate on the new certificate alone, refused as signed by an unknown key,
    after the county had already certified the key: the station could not rotate."""
    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    county_fresh = await fed.rotate(county.id, tmp_path)
    fresh = create_key(tmp_path / "station.key")
    async with fed.client(county.id, caller=station.id) as client:
        cert = await rotate_online(station, fresh, client)
    assert (cert.key_id, cert.signer_key_id) == (fresh.key_id, county_fresh.key_id)
    known = station.keyring.lookup(county_fresh.key_id)
    assert known is not None and known.node == county.id


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (502, b"<html>Bad Gateway</html>", ErrorCode.PARENT_UNREACHABLE),  # a proxy's page
        (403, b"<html>Forbidden</html>", ErrorCode.MALFORMED),
        (200, b"<html>Welcome</html>", ErrorCode.MALFORMED),
        (200, b"[]", ErrorCode.MALFORMED),
        (200, b"{}", ErrorCode.MALFORMED),
    ],
)
async def test_an_answer_that_is_not_the_hubs_is_a_clear_error(
    fed: Federation, tmp_path: Path, status: int, body: bytes, code: ErrorCode
) -> None:
    """Enrollment and rotation behind a proxy that answers with an HTML page, or an answer
    without a certificate: a GuantongError with a stable code (the command line prints
    `error: <code>: …`), not a JSONDecodeError or a KeyError out of `guantong enroll`."""
    from hub.enrollment import create_token
    from node.enrollment import enroll_online

    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1", enroll=False)
    token = create_token(county, station.id, Tier.STATION)
    page = httpx.MockTransport(lambda r: httpx.Response(status, content=body))
    async with httpx.AsyncClient(transport=page) as client:
        with pytest.raises(GuantongError) as refused:
            await enroll_online(station, "http://js.wx.jy", token, client)
        assert refused.value.code is code
        with pytest.raises(GuantongError) as refused:
            await rotate_online(county, create_key(tmp_path / "fresh.key"), client)
        assert refused.value.code is code


async def test_an_answer_given_again_after_the_hub_rotated_installs(
    fed: Federation, tmp_path: Path
) -> None:
    """A child whose answer was lost asks again with the same token; meanwhile its county
    rotated its key. The answer again carried the chain of the county's current key, not
    of the key that signed the certificate, and did not install (unknown_origin)."""
    from hub.enrollment import answer_enrollment, create_token
    from node.enrollment import enrollment_request, install_enrollment

    county = fed.add("js.wx.jy")
    station = fed.add("js.wx.jy.s1", enroll=False)
    token = create_token(county, station.id, Tier.STATION)
    request = enrollment_request(station, token)
    first = answer_enrollment(county, request)  # lost on the way
    await fed.rotate(county.id, tmp_path)
    again = answer_enrollment(county, request)
    assert again["cert"] == first["cert"] and again["chain"] == first["chain"]
    cert = install_enrollment(station, token, again)
    assert cert.key_id == station.signer.key_id


async def test_a_second_certificate_for_a_key_keeps_what_it_signed_valid(
    fed: Federation,
) -> None:
    """PROTOCOL §7: old certificates stay valid for what they signed during their validity.
    A station enrolled again (new token, same key) has a second certificate for its key;
    every keyring replaced the key's validity by the new one's, and the heads the station
    had signed before it no longer verified above the county (bad_signature)."""
    from hub.enrollment import answer_enrollment, create_token
    from node.enrollment import enrollment_request, install_enrollment

    station = fed.add("js.wx.jy.s1")
    county = fed.nodes["js.wx.jy"]
    first = county.keyring.lookup(station.signer.key_id)
    assert first is not None
    fed.write(station.id, 3)
    assert (await fed.sync(station.id)).rejected == {}  # at the county, not yet above
    fed.clock.advance(days=3)
    token = create_token(county, station.id, Tier.STATION)  # enrolled once more
    install_enrollment(
        station, token, answer_enrollment(county, enrollment_request(station, token))
    )
    known = county.keyring.lookup(station.signer.key_id)
    assert known is not None and known.not_before == first.not_before
    assert known.not_after is not None and first.not_after is not None
    assert known.not_after > first.not_after
    assert (await fed.sync(county.id)).rejected == {}
    held = fed.nodes["js.wx"].log.head(station.id)
    assert held is not None and held.seq == 3


def test_offline_enrollment_files_are_private(tmp_path: Path) -> None:
    """The answer file holds the province secret, the request file the token and its proof
    (docs/threat-model.md: protected by file mode, as node.toml): both are written 0600,
    whatever the umask, and so is a file written over one left readable."""
    import os
    import stat

    umask = os.umask(0o022)  # the usual default
    try:
        _enroll_by_files_over_a_readable_answer(tmp_path)
    finally:
        os.umask(umask)
    for path in (tmp_path / "js.wx.req", tmp_path / "js.wx.ans"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path.name} has mode {mode:04o}"


def _enroll_by_files_over_a_readable_answer(tmp_path: Path) -> None:
    province, city = tmp_path / "province", tmp_path / "city"
    _gt("init", "--id", "js", "--tier", "province", "--home", str(province))
    _gt(
        "init",
        "--id",
        "js.wx",
        "--tier",
        "city",
        "--parent",
        "http://127.0.0.1:9",
        "--home",
        str(city),
    )
    token = _gt("token", "create", "js.wx", "--tier", "city", "--home", str(province)).strip()
    request, answer = tmp_path / "js.wx.req", tmp_path / "js.wx.ans"
    answer.write_text("left over")
    answer.chmod(0o644)
    _gt("enroll", "--token", token, "--request-file", str(request), "--home", str(city))
    _gt("token", "answer", str(request), "--out", str(answer), "--home", str(province))
    assert "province_secret" in answer.read_text()


async def test_a_tier_must_fit_the_ids_depth_in_tokens_and_certificates(
    fed: Federation,
) -> None:
    """docs/protocol.md §1: depth is fixed for province, city, county, township (1-4
    segments); a station or unit has at least 2. A county made a token, then a certificate,
    for js.wx.jy.s1 as a *city*, and every keyring took that station-level id for a hub
    that may certify children."""
    from hub.enrollment import create_token, create_tokens

    county = fed.add("js.wx.jy")
    for tier in (Tier.PROVINCE, Tier.CITY, Tier.COUNTY):
        with pytest.raises(GuantongError) as refused:
            create_token(county, "js.wx.jy.s1", tier)
        assert refused.value.code is ErrorCode.TIER_MISMATCH
    with pytest.raises(GuantongError) as refused:  # one wrong child spoils the sheet
        create_tokens(county, [("js.wx.jy.s1", Tier.STATION), ("js.wx.jy.s2", Tier.CITY)])
    assert refused.value.code is ErrorCode.TIER_MISMATCH
    assert create_token(county, "js.wx.jy.t1", Tier.TOWNSHIP)
    assert create_token(county, "js.wx.jy.u1", Tier.UNIT)
    rogue = Signer.generate()
    now = fed.clock()
    for holder in (county, fed.nodes["js.wx"]):  # the issuer's own keyring, and one above
        cert = issue_certificate(
            county.signer,
            issuer_id=county.id,
            node="js.wx.jy.s1",
            tier=Tier.CITY,
            public_raw=rogue.public_raw,
            not_before=format_time(now),
            not_after=format_time(now + timedelta(days=1)),
        )
        with pytest.raises(GuantongError) as refused:
            holder.keyring.add_certificate(cert)
        assert refused.value.code is ErrorCode.TIER_MISMATCH
        assert holder.keyring.lookup(rogue.key_id) is None


async def test_a_second_revocation_keeps_the_earlier_time_everywhere(fed: Federation) -> None:
    """Revoked from T, then again without --from: the keyrings kept T, but the command said
    the later time and wrote it into the node_cert record that travels up."""
    station = fed.add("js.wx.jy.s1")
    county, city = fed.nodes["js.wx.jy"], fed.nodes["js.wx"]
    first = fed.now()
    revoke_node(county, station.id, revoked_from=first)
    county.close()
    home = str(county.settings.home)
    done = CliRunner().invoke(app, ["revoke", station.id, "--home", home])  # now: later
    assert done.exit_code == 0, done.stderr
    assert f"from {first} " in done.stdout, done.stdout
    county = reopen(fed, county.id)
    records = [r.data for r in county.list("node_cert") if r.data and r.data["node"] == station.id]
    assert [r["revoked_from"] for r in records] == [first]
    await fed.cascade_up(county.id)
    key = city.keyring.lookup(station.signer.key_id)
    assert key is not None and key.revoked_from == first
