"""Trust commands: tokens, enrollment (online or by files), key rotation, revocation."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from hub.enrollment import answer_enrollment, create_token
from node.cli.common import HomeOpt, JsonOpt, app, client, command, console, open_node, print_json
from node.enrollment import enroll_online, enrollment_request, install_enrollment, rotate_online
from node.files import write_private
from node.keys import create_key
from node.runtime import Node
from node.tasks import revoke_node
from schemas.canonical import parse_json
from schemas.certs import Certificate
from schemas.errors import ErrorCode, GuantongError
from schemas.ids import Tier
from schemas.signing import Signer
from schemas.times import format_time, parse_time

__all__: list[str] = []

token_app = typer.Typer(help="Enrollment tokens (at a hub).", no_args_is_help=True)
keys_app = typer.Typer(help="This node's keys.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")


@token_app.command("create")
@command
def token_create(
    child: Annotated[str, typer.Argument(metavar="CHILD_ID", help="The child's node id.")],
    tier: Annotated[Tier, typer.Option("--tier", help="The child's tier.")],
    days: Annotated[int, typer.Option("--valid-days", min=1, max=365)] = 14,
    home: HomeOpt = None,
) -> None:
    """Print a one-time, expiring enrollment token for CHILD_ID (it carries the root key id)."""
    with open_node(home) as node:
        token = create_token(node, child, tier, valid_for=timedelta(days=days))
    typer.echo(token)


@token_app.command("answer")
@command
def token_answer(
    request_file: Annotated[Path, typer.Argument(help="Enrollment request from the child.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Answer file to give back.")],
    home: HomeOpt = None,
) -> None:
    """Offline enrollment at the hub: answer a request file with a certificate file."""
    request = _read_json(request_file)
    with open_node(home) as node:
        response = answer_enrollment(node, request)
    # it holds the province secret: for this user only, as node.toml
    write_private(out, orjson.dumps(response, option=orjson.OPT_INDENT_2))
    console.print(f"certified {request['node']}; give {out} back to it")


@app.command()
@command
def enroll(
    token: Annotated[str, typer.Option("--token", help="The token from the hub's operator.")],
    parent: Annotated[str | None, typer.Option("--parent", help="Hub URL (online).")] = None,
    request_file: Annotated[
        Path | None, typer.Option("--request-file", help="Offline: write the request here.")
    ] = None,
    response_file: Annotated[
        Path | None, typer.Option("--response-file", help="Offline: install this answer.")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enroll this node with its hub: online (--parent) or by files (request, then answer)."""
    with open_node(home) as node:
        if response_file is not None:
            cert = install_enrollment(node, token, _read_json(response_file))
        elif request_file is not None:
            # the token and the proof get the answer, province secret included, while the
            # token is valid: for this user only
            write_private(
                request_file,
                orjson.dumps(enrollment_request(node, token), option=orjson.OPT_INDENT_2),
            )
            console.print(
                f"wrote {request_file}; at the hub: "
                f"guantong token answer {request_file.name} --out answer.json"
            )
            return
        else:
            url = parent or node.settings.parent_url
            if not url:
                raise GuantongError(ErrorCode.NO_PARENT, "pass --parent URL (or --request-file)")
            cert = asyncio.run(_enroll_online(node, url, token))
    if as_json:
        print_json(cert.to_dict())
    else:
        console.print(
            f"enrolled {cert.node} ({cert.tier.value}): key {cert.key_id} certified by "
            f"{cert.issuer} until {cert.not_after}"
        )


async def _enroll_online(node: Node, url: str, token: str) -> Any:
    async with client(node) as http:
        return await enroll_online(node, url, token, http)


@keys_app.command("rotate")
@command
def rotate(home: HomeOpt = None) -> None:
    """Replace this node's key: the parent certifies the new key; history stays verifiable."""
    with open_node(home) as node:
        if node.settings.tier is Tier.PROVINCE or not node.settings.parent_url:
            raise GuantongError(
                ErrorCode.FORBIDDEN,
                "the province root key is the trust anchor of every node; it is not rotated here",
            )
        pending = node.settings.key_path.with_name("node.key.new")
        pending.unlink(missing_ok=True)
        fresh = create_key(pending)
        cert = asyncio.run(_rotate(node, fresh))
        node.adopt_key(fresh, pending)
    console.print(
        f"rotated: new key {cert.key_id} certified by {cert.issuer} until {cert.not_after}"
    )


async def _rotate(node: Node, fresh: Signer) -> Certificate:
    async with client(node) as http:
        return await rotate_online(node, fresh, http)


@app.command()
@command
def revoke(
    target: Annotated[str, typer.Argument(metavar="NODE", help="Node whose keys to revoke.")],
    since: Annotated[
        str | None, typer.Option("--from", help="Revoked from this time (default: now).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Stop trusting NODE's keys from a time: up as node_cert updates, down as a revoke task."""
    with open_node(home) as node:
        when = format_time(parse_time(since)) if since else format_time(node.clock())
        task = revoke_node(node, target, revoked_from=when)
        revoked = task.payload["key_ids"]
        times = sorted(
            {k.revoked_from or when for k in node.keyring.keys_of(target) if k.key_id in revoked}
        )
    # an earlier revocation is kept: say the times in force, not the one asked for
    shown = times[0] if len(times) == 1 else ", ".join(times)
    console.print(
        f"revoked {len(revoked)} key(s) of {target} from {shown} "
        f"(revoke task {task.id} for the subtree)"
    )


def _read_json(path: Path) -> Any:
    try:
        return parse_json(path.read_bytes())
    except OSError as exc:
        raise GuantongError(ErrorCode.NOT_FOUND, f"cannot read {path}: {exc.strerror}") from exc
