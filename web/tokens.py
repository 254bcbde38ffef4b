"""API tokens: how a system signs in to the JSON API.

A token is 32 random bytes (URL-safe base64, prefixed ``fdt_`` so secret scanners can spot a
leaked one).  It is shown once, when it is made; the database keeps only its sha256, which is
enough for a high-entropy secret (no salt or slow hash needed: there is nothing to guess).
A token acts as one user, with exactly that user's access; revoking it refuses it at once.

``frontdoor tokens create NAME --user USERNAME [--sender AGENCY]`` / ``frontdoor tokens revoke NAME`` /
``frontdoor tokens list``.  A partner system's token is bound to its sender (``police``,
``health``, ``school``): it may send referrals only as that sender, and its references are its own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import click
import sqlalchemy as sa

from engine import audit, clock
from engine.audit import PendingEvent
from engine.cli import _engine, user_errors
from engine.db import Database
from engine.errors import Conflict, InvalidData, NotFound
from engine.models import ApiToken, User

PREFIX = "fdt_"
# last_used_at is written at most this often per token: a busy client costs one write a minute.
LAST_USED_RESOLUTION = timedelta(minutes=1)
SENDER = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    db: Database, name: str, username: str, actor: str = "cli", sender: str | None = None
) -> str:
    """Make a token called ``name`` acting as ``username``; the token itself is returned, once."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidData("give the token a name of 1 to 100 characters, e.g. the system that will use it")
    if sender is not None and not SENDER.match(sender):
        raise InvalidData(
            f"the sender {sender!r} must be a short lower-case name such as police, health or school"
        )
    token = new_token()
    with db.transaction() as session:
        user = session.scalar(sa.select(User).where(User.username == username))
        if user is None or not user.active:
            raise NotFound(f"there is no active user called {username!r}")
        if session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name)) is not None:
            raise Conflict(f"there is already a token called {name!r}; revoke it or choose another name")
        now = clock.now()
        session.add(
            ApiToken(name=name, token_hash=hash_token(token), user_id=user.id, created_at=now, sender=sender)
        )
        event = {"name": name, "user": username, **({"sender": sender} if sender else {})}
        audit.append(session, [PendingEvent(actor, "api_token.created", data=event)], now)
    return token


def revoke_token(db: Database, name: str, actor: str = "cli") -> None:
    with db.transaction() as session:
        row = session.scalar(sa.select(ApiToken).where(ApiToken.name == name))
        if row is None:
            raise NotFound(f"there is no token called {name!r}; see `frontdoor tokens list`")
        if row.revoked:
            return
        row.revoked = True
        now = clock.now()
        audit.append(session, [PendingEvent(actor, "api_token.revoked", data={"name": name})], now)


@dataclass(frozen=True)
class TokenUser:
    token_id: int
    token_name: str
    user_id: int
    sender: str | None = None  # the partner agency a partner system's token speaks for


def verify(db: Database, token: str) -> TokenUser | None:
    """The token's user, if the token is known, not revoked, and its user still active."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with db.read() as session:
        row = session.execute(
            sa.select(ApiToken.id, ApiToken.name, ApiToken.user_id, ApiToken.last_used_at, ApiToken.sender)
            .join(User, User.id == ApiToken.user_id)
            .where(
                ApiToken.token_hash == hash_token(token),
                ApiToken.revoked.is_(False),
                User.active.is_(True),
            )
        ).first()
    if row is None:
        return None
    now = clock.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        _touch(db, row.id, now)
    return TokenUser(row.id, row.name, row.user_id, row.sender)


def _touch(db: Database, token_id: int, now: datetime) -> None:
    with db.transaction() as session:
        session.execute(
            sa.update(ApiToken)
            .where(
                ApiToken.id == token_id,
                sa.or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - LAST_USED_RESOLUTION),
            )
            .values(last_used_at=now)
        )


# ---------------------------------------------------------------------------------------- CLI


@click.group("tokens")
def tokens_group() -> None:
    """API tokens: each acts as one user, with that user's access."""


@tokens_group.command("create")
@click.argument("name")
@click.option("--user", "username", required=True, help="The user the token acts as.")
@click.option(
    "--sender",
    default=None,
    help="For a partner agency's system: the sender it speaks for (police, health, school). "
    "Needed to send referrals to POST /api/referrals.",
)
@click.pass_context
@user_errors
def create_command(ctx: click.Context, name: str, username: str, sender: str | None) -> None:
    """Make a token called NAME; it is printed once and cannot be shown again."""
    token = create_token(_engine(ctx).db, name, username, sender=sender)
    click.echo(token)
    click.echo(
        f"token {name!r} acts as {username}; keep it secret: only its hash is stored, it cannot be shown "
        "again. Send it as `Authorization: Bearer <token>`.",
        err=True,
    )


@tokens_group.command("revoke")
@click.argument("name")
@click.pass_context
@user_errors
def revoke_command(ctx: click.Context, name: str) -> None:
    """Refuse the token called NAME from now on."""
    revoke_token(_engine(ctx).db, name)
    click.echo(f"ok: token {name!r} revoked")


@tokens_group.command("list")
@click.pass_context
@user_errors
def list_command(ctx: click.Context) -> None:
    """Tokens by name, the user each acts as, and when it was last used (never the token)."""
    with _engine(ctx).db.read() as session:
        rows = session.execute(
            sa.select(
                ApiToken.name,
                User.username,
                ApiToken.created_at,
                ApiToken.last_used_at,
                ApiToken.revoked,
                ApiToken.sender,
            )
            .join(User, User.id == ApiToken.user_id)
            .order_by(ApiToken.name)
        ).all()
    if not rows:
        click.echo("no tokens")
    for name, username, created, used, revoked, sender in rows:
        last = used.isoformat(timespec="minutes") if used else "never used"
        state = "revoked" if revoked else "active"
        speaks_for = f"  sender {sender}" if sender else ""
        click.echo(
            f"{name:<24} {username:<16} {state:<8} created {created:%Y-%m-%d}  last used {last}{speaks_for}"
        )
