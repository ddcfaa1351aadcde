"""The CLI through Typer's runner, and through real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from tests.conftest import NOTE_BUNDLE

runner = CliRunner()


def gt(*args: str, input: str | bytes | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "station"
    code, _, err = gt(
        "init",
        "--id",
        "js.wx.jy.s1",
        "--tier",
        "station",
        "--parent",
        "http://127.0.0.1:9",
        "--home",
        str(path),
    )
    assert code == 0, err
    shutil.copytree(NOTE_BUNDLE, path / "contracts")
    return path


def test_init_put_get_list_status_heads_verify(home: Path) -> None:
    code, out, err = gt(
        "put",
        "note",
        "--home",
        str(home),
        "--json",
        input='{"content":"路灯不亮"}\n\n{"content":"噪音"}\n',
    )
    assert code == 0, err
    put = json.loads(out)
    assert (put["first"], put["last"]) == (1, 2)
    code, out, _ = gt("get", "note", put["ids"][0], "--home", str(home))
    assert json.loads(out)["data"] == {"content": "路灯不亮"}
    code, out, _ = gt("list", "note", "--home", str(home), "--json")
    assert len(out.splitlines()) == 2
    code, out, _ = gt("status", "--home", str(home), "--json")
    status = json.loads(out)
    assert status["head"]["seq"] == 2 and len(status["head"]["hash"]) == 64
    code, out, _ = gt("heads", "--home", str(home), "--json")
    assert json.loads(out) == [
        {
            "origin": "js.wx.jy.s1",
            "seq": 2,
            "head": status["head"]["hash"],
            "time": status["head"]["time"],
        }
    ]
    code, out, _ = gt("verify", "--home", str(home), "--json")
    assert code == 0 and json.loads(out)["entries"] == 2


def test_one_pretty_printed_object_is_one_record(home: Path) -> None:
    code, out, err = gt("put", "note", "--home", str(home), "--json", input='{\n  "a": 1\n}\n')
    assert code == 0, err
    assert json.loads(out)["last"] == 1


@pytest.mark.parametrize(
    ("payload", "code_name", "line"),
    [
        ('{"a":1}\n{"b":\n', "malformed", 2),
        ('{"a":1}\n[1,2]\n', "malformed", 2),
        ('{"a":1}\n{"rating":4.5}\n', "float_not_allowed", 2),
        ('{"a":1}\n{"id":"not-a-uuid"}\n', "invalid_record_id", 2),
        ('{"a":1}\n{"a":1}\n{"big":"' + "x" * 70_000 + '"}\n', "too_large", 3),
        (b'{"a":1}\n{"b":"\xff"}\n', "malformed", 2),
        ('{"n":99999999999999999}\n{"a":1}\n', "integer_out_of_range", 1),
    ],
)
def test_bad_input_names_code_and_line_and_writes_nothing(
    home: Path, payload: str | bytes, code_name: str, line: int
) -> None:
    code, out, err = gt("put", "note", "--home", str(home), input=payload)
    assert code == 1
    assert err.startswith(f"error: {code_name}: line {line}")
    assert len(err.strip().splitlines()) == 1
    _, out, _ = gt("status", "--home", str(home), "--json")
    assert json.loads(out)["head"]["seq"] == 0


@pytest.mark.parametrize(
    ("args", "code_name"),
    [
        (["--id", "JS", "--tier", "province"], "invalid_node_id"),
        (["--id", "js.wx.s1", "--tier", "station"], "tier_mismatch"),
        (["--id", "js", "--tier", "province", "--parent", "http://x"], "tier_mismatch"),
        (["--id", "js.wx", "--tier", "county", "--parent", "http://x"], "tier_mismatch"),
    ],
)
def test_init_refuses_bad_layouts(tmp_path: Path, args: list[str], code_name: str) -> None:
    code, _, err = gt("init", *args, "--home", str(tmp_path / "n"))
    assert code == 1 and err.startswith(f"error: {code_name}:")
    assert not (tmp_path / "n").exists()


def test_init_over_existing_home_changes_nothing(home: Path) -> None:
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    code, _, err = gt("init", "--id", "js", "--tier", "province", "--home", str(home))
    assert code == 1 and err.startswith("error: home_exists:")
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file()} == before


def test_world_readable_key_refuses_to_start(home: Path) -> None:
    os.chmod(home / "keys" / "node.key", 0o644)
    code, _, err = gt("status", "--home", str(home))
    assert code == 1 and err.startswith("error: key_permissions:")


def test_corrupt_key_refuses_to_start(home: Path) -> None:
    (home / "keys" / "node.key").write_bytes(b"not a key")
    code, _, err = gt("status", "--home", str(home))
    assert code == 1 and err.startswith("error: key_corrupt:")


def test_unknown_home(tmp_path: Path) -> None:
    code, _, err = gt("status", "--home", str(tmp_path / "nothing"))
    assert code == 1 and err.startswith("error: home_missing:")


def test_a_store_of_a_newer_release_is_refused_in_one_line(home: Path) -> None:
    """An alembic traceback (``Can't locate revision``) on every command, before."""
    with sqlite3.connect(home / "node.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '2099_01_01_0099'")
    for command in ("status", "verify"):
        code, _, err = gt(command, "--home", str(home))
        assert code == 1 and err.startswith("error: store_error: the store was written by a ")
        assert "newer release" in err and "2099_01_01_0099" in err and err.count("\n") == 1


def test_tamper_one_byte_then_verify_names_it(home: Path) -> None:
    gt("put", "note", "--home", str(home), input='{"a":"x1"}\n{"a":"x2"}\n{"a":"x3"}\n')
    with sqlite3.connect(home / "node.db") as db:
        (raw,) = db.execute("SELECT raw FROM entries WHERE seq = 2").fetchone()
        db.execute("UPDATE entries SET raw = ? WHERE seq = 2", (raw.replace(b"x2", b"x9"),))
    code, _, err = gt("verify", "--home", str(home))
    assert code == 1
    assert err.startswith("error: verify_failed: js.wx.jy.s1 seq 2: bad_hash:")


def _cli(
    *args: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args],
        input=input,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_real_processes_write_concurrently_without_gaps(tmp_path: Path) -> None:
    home = tmp_path / "prov"
    env = {"GUANTONG_HOME": str(home)}
    assert _cli("init", "--id", "js", "--tier", "province", env=env).returncode == 0
    shutil.copytree(NOTE_BUNDLE, home / "contracts")
    batch = b"".join(b'{"n":%d}\n' % i for i in range(200))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "node", "put", "note"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(batch, timeout=120)
        assert proc.returncode == 0, err
    status = json.loads(_cli("status", "--json", env=env).stdout)
    assert status["head"]["seq"] == 600
    verified = _cli("verify", "--json", env=env)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["entries"] == 600


def test_a_file_a_command_cannot_write_is_an_error_with_its_code(tmp_path: Path) -> None:
    """``--request-file`` into a folder that does not exist: one line naming the code and
    the file, exit 1, no traceback."""
    province, city = tmp_path / "js", tmp_path / "wx"
    code, _, err = gt("init", "--id", "js", "--tier", "province", "--home", str(province))
    assert code == 0, err
    code, _, err = gt(
        "init", "--id", "js.wx", "--tier", "city", "--parent", "http://127.0.0.1:9",
        "--home", str(city),
    )  # fmt: skip
    assert code == 0, err
    code, token, err = gt("token", "create", "js.wx", "--tier", "city", "--home", str(province))
    assert code == 0, err
    target = tmp_path / "no-such-stick" / "request.json"
    code, _, err = gt(
        "enroll", "--token", token.strip(), "--request-file", str(target), "--home", str(city)
    )
    assert code == 1
    assert err.startswith("error: not_found: ") and str(target) in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["verify", "heads"])
def test_a_prefix_that_is_no_node_id_is_refused(home: Path, command: str) -> None:
    """A mistyped prefix would verify nothing and say ok."""
    code, _, err = gt(command, "--prefix", "JS.WX!", "--home", str(home))
    assert code == 1 and err.startswith("error: invalid_node_id: ")


def test_serve_refuses_what_would_stop_it_in_one_line(home: Path) -> None:
    """A key others may read, a port in use: inside uvicorn each was a traceback and exit
    status 3, after the server had begun to start."""
    import socket

    os.chmod(home / "keys" / "node.key", 0o644)
    code, _, err = gt("serve", "--port", "0", "--home", str(home))
    assert code == 1 and err.startswith("error: key_permissions:"), err
    os.chmod(home / "keys" / "node.key", 0o600)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = gt("serve", "--host", "127.0.0.1", "--port", port, "--home", str(home))
    assert code == 1 and err.startswith("error: settings_invalid: cannot listen on"), err
    assert err.count("\n") == 1


def test_task_list_shows_whole_ids(tmp_path: Path) -> None:
    """The id is what `task report`, `amend` and `cancel` take: a table cut to 80 columns
    showed it as 01a2522a-8f0d-7ceb-863d-2827472c… (and shorter with a longer target)."""
    home = str(tmp_path / "js")
    assert gt("init", "--id", "js", "--tier", "province", "--home", home)[0] == 0
    payload = '{"text": "hi"}'
    issued = ["task", "issue", "--to", "js.wx.jy.u-zjj", "--kind", "notice", "--home", home]
    code, out, err = gt(*issued, "--payload", payload)
    assert code == 0, err
    code, listed, _ = gt("task", "list", "--json", "--home", home)
    (task,) = json.loads(listed)
    code, table, err = gt("task", "list", "--home", home)
    assert code == 0 and task["id"] in table and "js.wx.jy.u-zjj" in table, table


def test_a_register_without_its_columns_says_which(tmp_path: Path) -> None:
    """A register without a tier column (or separated by ';') said `line 2: 'tier'`."""
    home = str(tmp_path / "js")
    assert gt("init", "--id", "js", "--tier", "province", "--home", home)[0] == 0
    register = tmp_path / "reg.csv"
    for text in ("node,name\njs.wx,无锡\n", "node;name;tier\njs.wx;无锡;city\n"):
        register.write_text(text, "utf-8")
        code, _, err = gt("register", "import", str(register), "--home", home)
        assert code == 1 and err.startswith("error: malformed:"), err
        assert "node,name,tier" in err and "missing" in err and "tier" in err.split("missing")[1], (
            err
        )


def test_export_at_a_node_without_parent_is_refused_as_sync_is(tmp_path: Path) -> None:
    home = str(tmp_path / "js")
    assert gt("init", "--id", "js", "--tier", "province", "--home", home)[0] == 0
    code, _, err = gt("export", "--out", str(tmp_path / "x.gtb"), "--home", home)
    assert code == 1 and err.startswith("error: no_parent:"), err
    assert not (tmp_path / "x.gtb").exists()
