"""``guantong user``: people's accounts for the web pages (not node keys)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from node.cli.common import HomeOpt, app, command, console, open_node
from node.web.accounts import ROLES, add_user

__all__: list[str] = []

user_app = typer.Typer(help="People's accounts for the web pages.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("add")
@command
def add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    home: HomeOpt = None,
) -> None:
    """Add a person (or reset their password and role)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with open_node(home) as node:
        add_user(node, name, role, password)
    console.print(f"{name} can now sign in as {role}")
