"""`opsline whoami`, `token`, `team`, `user` and `audit`: identity through the gateway."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from opsline.client import OpslineClient

tokens = typer.Typer(
    help="Your API tokens: create (shown once), list, revoke.", no_args_is_help=True
)
teams = typer.Typer(
    help="Teams and their members (viewer, maintainer, admin).", no_args_is_help=True
)
users = typer.Typer(help="Users (platform admins).", no_args_is_help=True)


def _client(ctx: typer.Context) -> OpslineClient:
    opts = ctx.find_root().obj
    return OpslineClient(getattr(opts, "url", None), getattr(opts, "token", None))


def _out() -> Console:
    return Console(highlight=False)


def whoami(ctx: typer.Context) -> None:
    """Who the token is: user, teams and roles, scopes."""
    with _client(ctx) as ops:
        me = ops.whoami()
    admin = " (platform admin)" if me["platform_admin"] else ""
    _out().print(f"{me['user']}{admin}  scopes: {' '.join(me['scopes'])}")
    for team, role in me["teams"].items():
        _out().print(f"  {team}: {role}")


@tokens.command("create")
def token_create(
    ctx: typer.Context,
    name: str,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="read, write or admin; may repeat")
    ] = None,
    expires_in: Annotated[int | None, typer.Option(help="seconds until it expires")] = None,
    user: Annotated[str | None, typer.Option(help="for another user (platform admins)")] = None,
) -> None:
    """Create a token; its secret is printed once and never again."""
    with _client(ctx) as ops:
        made = ops.create_token(name, scopes=scope, expires_in_s=expires_in, user=user)
    expiry = made["expires_at"] or "never"
    typer.echo(made["token"])
    Console(stderr=True, highlight=False).print(
        f"token {made['id']} {made['name']!r}: scopes {' '.join(made['scopes'])}, "
        f"expires {expiry}. Keep it now: it is not shown again."
    )


@tokens.command("list")
def token_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="another user's (platform admins)")] = None,
) -> None:
    """Tokens with their state and last use (never their secrets)."""
    with _client(ctx) as ops:
        rows = ops.list_tokens(user).get("tokens", [])
    for t in rows:
        _out().print(
            f"{t['id']}  {t['name']}  {t['state']}  scopes {' '.join(t['scopes'])}"
            f"  expires {t['expires_at'] or 'never'}  last used {t['last_used_at'] or 'never'}"
        )


@tokens.command("revoke")
def token_revoke(ctx: typer.Context, token_id: int) -> None:
    """Revoke a token at once."""
    with _client(ctx) as ops:
        ops.revoke_token(token_id)
    _out().print(f"token {token_id} revoked")


@teams.command("create")
def team_create(ctx: typer.Context, name: str, description: str = "") -> None:
    with _client(ctx) as ops:
        ops.create_team(name, description)
    _out().print(f"team {name} created")


@teams.command("list")
def team_list(ctx: typer.Context) -> None:
    """Your teams and your role in each (platform admins: every team)."""
    with _client(ctx) as ops:
        rows = ops.list_teams().get("teams", [])
    for t in rows:
        _out().print(f"{t['name']}  {t['role'] or '-'}  {t['description']}")


@teams.command("members")
def team_members(ctx: typer.Context, team: str) -> None:
    with _client(ctx) as ops:
        rows = ops.team_members(team).get("members", [])
    for m in rows:
        _out().print(f"{m['user']}  {m['role']}")


@teams.command("add")
def team_add(
    ctx: typer.Context,
    team: str,
    user: str,
    role: Annotated[str, typer.Option(help="viewer, maintainer or admin")] = "viewer",
) -> None:
    """Add a member, or change their role (team admins, platform admins)."""
    with _client(ctx) as ops:
        ops.set_member(team, user, role)
    _out().print(f"{user} is a {role} of {team}")


@teams.command("remove")
def team_remove(ctx: typer.Context, team: str, user: str) -> None:
    with _client(ctx) as ops:
        ops.remove_member(team, user)
    _out().print(f"{user} removed from {team}")


@users.command("create")
def user_create(
    ctx: typer.Context,
    name: str,
    platform_admin: Annotated[bool, typer.Option(help="may do everything")] = False,
) -> None:
    with _client(ctx) as ops:
        ops.create_user(name, platform_admin=platform_admin)
    _out().print(f"user {name} created (a member of no team)")


@users.command("list")
def user_list(ctx: typer.Context) -> None:
    with _client(ctx) as ops:
        rows = ops.list_users().get("users", [])
    for u in rows:
        flags = " platform-admin" if u["platform_admin"] else ""
        flags += " disabled" if u["disabled"] else ""
        _out().print(f"{u['name']}  {u['source']}{flags}")


def audit(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option()] = None,
    team: Annotated[str | None, typer.Option()] = None,
    app: Annotated[str | None, typer.Option()] = None,
    outcome: Annotated[str | None, typer.Option(help="ok, denied, rejected or failed")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """Mutating requests, newest first: who, what, when, outcome."""
    with _client(ctx) as ops:
        rows = ops.audit(user=user, team=team, app=app, outcome=outcome, limit=limit)["records"]
    for r in rows:
        who = r["user"] or "(no valid token)"
        _out().print(
            f"{r['ts']}  {who}  {r['method']} {r['path']}  {r['status']} {r['outcome']}"
            f"{'  ' + r['reason'] if r['reason'] else ''}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(tokens, name="token")
    app.add_typer(teams, name="team")
    app.add_typer(users, name="user")
    app.command("whoami")(whoami)
    app.command("audit")(audit)
