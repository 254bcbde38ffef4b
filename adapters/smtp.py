"""E-mail: the outbox's messages sent by SMTP, after the commands that wrote them have committed.

Configuration (environment): ``FRONTDOOR_SMTP_HOST`` (without it nothing is sent and the outbox
keeps its rows), ``FRONTDOOR_SMTP_PORT`` (25; 587 with STARTTLS; 465 with SSL),
``FRONTDOOR_SMTP_STARTTLS=1`` or ``FRONTDOOR_SMTP_SSL=1``, ``FRONTDOOR_SMTP_USERNAME`` and
``FRONTDOOR_SMTP_PASSWORD``, ``FRONTDOOR_SMTP_FROM`` (the sender's address) and
``FRONTDOOR_SMTP_TIMEOUT`` (seconds).  The worker runs :class:`OutboxSender` every few seconds.

What is guaranteed, and what is not
-----------------------------------
Each outbox row is *claimed* before anyone talks to the SMTP server: one committed transaction
moves it from ``pending`` to ``sending`` with the sender's name and the time
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers).  Two senders therefore
never send the same row at the same time, and a row once marked ``sent`` is never sent again.

Exactly-once delivery is not possible over SMTP: if the process dies, or the connection drops,
after the server has accepted the message but before ``sent`` is committed, we cannot know
whether it went.  Such a row stays ``sending``; when its claim is older than the lease it is
sent again.  So the guarantee is **at least once, never lost**, with a duplicate possible only
in that window, and every attempt at one row carries the same ``Message-ID``
(``<frontdoor-outbox-ID.CREATED@domain>``), which mail systems and clients use to recognise the
copy.  A server that is down or answers 4xx leaves the row ``pending`` with ``attempts``,
``last_error`` and ``next_attempt_at`` (exponential backoff, capped); a 5xx answer, or nobody to
send to, marks it ``failed`` with the reason, for a person to look at.
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import clock
from engine.db import Database
from engine.errors import InvalidData
from engine.models import Outbox, User

if TYPE_CHECKING:
    from engine.core import Engine
    from engine.worker import PeriodicJob

log = logging.getLogger("frontdoor.smtp")

# Outbox kinds that are e-mail: a payload with "to" (usernames or addresses), "subject", "body".
EMAIL_KINDS = ("notification", "email")
ENV = "FRONTDOOR_SMTP_"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "frontdoor@localhost"
    timeout: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
        """The settings in ``FRONTDOOR_SMTP_*``; None when no host is set (e-mail is off)."""
        env = os.environ if environ is None else environ
        host = env.get(ENV + "HOST", "").strip()
        if not host:
            return None
        use_starttls, use_ssl = _flag(env, "STARTTLS"), _flag(env, "SSL")
        if use_starttls and use_ssl:
            raise InvalidData(f"set one of {ENV}STARTTLS and {ENV}SSL, not both")
        port_text = env.get(ENV + "PORT", "").strip()
        try:
            port = int(port_text) if port_text else (465 if use_ssl else 587 if use_starttls else 25)
        except ValueError:
            raise InvalidData(f"{ENV}PORT must be a port number, not {port_text!r}") from None
        if not 0 < port < 65536:
            raise InvalidData(f"{ENV}PORT must be between 1 and 65535, not {port}")
        username = env.get(ENV + "USERNAME") or None
        password = env.get(ENV + "PASSWORD") or None
        if (username is None) != (password is None):
            raise InvalidData(f"set both {ENV}USERNAME and {ENV}PASSWORD, or neither")
        timeout_text = env.get(ENV + "TIMEOUT", "30")
        try:
            timeout = float(timeout_text)
        except ValueError:
            raise InvalidData(f"{ENV}TIMEOUT must be a number of seconds, not {timeout_text!r}") from None
        sender = env.get(ENV + "FROM", "").strip() or f"frontdoor@{socket.getfqdn()}"
        if "@" not in sender:
            raise InvalidData(f"{ENV}FROM must be an e-mail address, not {sender!r}")
        return cls(host, port, use_starttls, use_ssl, username, password, sender, timeout)


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(ENV + name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise InvalidData(f"{ENV}{name} must be 1 or 0, not {value!r}")


class TemporaryFailure(Exception):
    """Try again later (server down, 4xx)."""


class PermanentFailure(Exception):
    """Trying again will not help (5xx, nobody to send to)."""


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


@dataclass
class _Claimed:
    id: int
    created_at: datetime
    attempts: int
    payload: dict[str, Any]
    addresses: list[str]
    unknown: list[str]


class OutboxSender:
    def __init__(
        self,
        db: Database,
        settings: SmtpSettings,
        name: str | None = None,
        *,
        batch: int = 50,
        lease: timedelta = timedelta(minutes=10),
        max_attempts: int = 12,
        backoff: timedelta = timedelta(seconds=30),
        backoff_cap: timedelta = timedelta(hours=1),
    ) -> None:
        self.db = db
        self.settings = settings
        self.name = name or f"mailer@{socket.gethostname()}:{os.getpid()}"
        self.batch = batch
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self._smtp: smtplib.SMTP | None = None

    # ------------------------------------------------------------------ loop

    def send_due(self) -> DeliveryReport:
        """Send what is due, one claimed row at a time, until none is left, the batch is done,
        or the server fails (then the rest waits for the next run: no hammering a server that is down)."""
        report = DeliveryReport()
        try:
            for _ in range(self.batch):
                claimed = self._claim()
                if claimed is None:
                    break
                try:
                    self._deliver(claimed)
                except TemporaryFailure as exc:
                    self._close()
                    if self._release(claimed, str(exc)):
                        report.failed += 1
                    else:
                        report.retried += 1
                    break
                except PermanentFailure as exc:
                    self._finish(claimed, "failed", str(exc))
                    report.failed += 1
                    continue
                note = f"not sent to {', '.join(claimed.unknown)}" if claimed.unknown else None
                self._finish(claimed, "sent", note)
                report.sent += 1
        finally:
            self._close()
        if report.sent or report.retried or report.failed:
            log.info("e-mail: %d sent, %d to retry, %d failed", report.sent, report.retried, report.failed)
        return report

    # ------------------------------------------------------------- database

    def _claim(self) -> _Claimed | None:
        """Take one due row as ours, committed before any SMTP (see the module's note)."""
        with self.db.transaction() as session:
            now = clock.now()
            due = sa.or_(
                sa.and_(
                    Outbox.status == "pending",
                    sa.or_(Outbox.next_attempt_at.is_(None), Outbox.next_attempt_at <= now),
                ),
                # A claim older than the lease: its sender died mid-send (at least once).
                sa.and_(Outbox.status == "sending", Outbox.claimed_at <= now - self.lease),
            )
            row = session.scalar(
                sa.select(Outbox)
                .where(due, Outbox.kind.in_(EMAIL_KINDS))
                .order_by(Outbox.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if row is None:
                return None
            row.status, row.claimed_by, row.claimed_at = "sending", self.name, now
            row.attempts += 1
            addresses, unknown = _addresses(session, row.payload.get("to") or [])
            return _Claimed(row.id, row.created_at, row.attempts, dict(row.payload), addresses, unknown)

    def _finish(self, claimed: _Claimed, status: str, note: str | None) -> None:
        with self.db.transaction() as session:
            done = session.execute(
                sa.update(Outbox)
                .where(Outbox.id == claimed.id, Outbox.status == "sending", Outbox.claimed_by == self.name)
                .values(
                    status=status,
                    sent_at=clock.now() if status == "sent" else None,
                    last_error=note,
                    next_attempt_at=None,
                )
            )
            if getattr(done, "rowcount", 1) != 1:
                # Our claim outlived its lease and another sender took the row: it may go twice,
                # with the same Message-ID.  Say so; never overwrite what the other one recorded.
                log.warning("outbox row %s was reclaimed by another sender while we sent it", claimed.id)

    def _release(self, claimed: _Claimed, error: str) -> bool:
        """Back to pending with the next attempt put off; True if that was the last attempt."""
        now = clock.now()
        last = claimed.attempts >= self.max_attempts
        wait = min(self.backoff_cap, self.backoff * (2 ** (claimed.attempts - 1)))
        with self.db.transaction() as session:
            session.execute(
                sa.update(Outbox)
                .where(Outbox.id == claimed.id, Outbox.status == "sending", Outbox.claimed_by == self.name)
                .values(
                    status="failed" if last else "pending",
                    last_error=f"gave up after {claimed.attempts} attempts: {error}" if last else error,
                    next_attempt_at=None if last else now + wait,
                )
            )
        return last

    # ----------------------------------------------------------------- SMTP

    def message_id(self, row_id: int, created_at: datetime) -> str:
        """The same for every attempt at one row: how a copy sent twice is recognised."""
        domain = self.settings.sender.rsplit("@", 1)[1]
        return f"<frontdoor-outbox-{row_id}.{created_at:%Y%m%d%H%M%S}@{domain}>"

    def message_id_of(self, row: Outbox) -> str:
        return self.message_id(row.id, row.created_at)

    def message(self, claimed: _Claimed) -> EmailMessage:
        payload = claimed.payload
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = ", ".join(claimed.addresses)
        message["Subject"] = str(payload.get("subject") or "A message from Frontdoor")
        message["Date"] = format_datetime(claimed.created_at)
        message["Message-ID"] = self.message_id(claimed.id, claimed.created_at)
        message["X-Frontdoor-Outbox"] = str(claimed.id)
        message.set_content(str(payload.get("body") or ""))
        return message

    def _deliver(self, claimed: _Claimed) -> None:
        if not claimed.addresses:
            raise PermanentFailure(f"nobody to send to: {', '.join(claimed.unknown) or 'no recipients'}")
        message = self.message(claimed)
        try:
            smtp = self._connection()
            refused = smtp.send_message(message, to_addrs=claimed.addresses)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(f"{a}: {c} {m.decode(errors='replace')}" for a, (c, m) in exc.recipients.items())
            if all(code >= 500 for code in codes):
                raise PermanentFailure(f"every recipient was refused: {text}") from None
            raise TemporaryFailure(f"recipients refused for now: {text}") from None
        except smtplib.SMTPAuthenticationError as exc:
            # The configuration is wrong, not the message: keep it until someone fixes the password.
            raise TemporaryFailure(f"the SMTP server refused the login: {exc.smtp_code}") from None
        except smtplib.SMTPResponseException as exc:
            said = exc.smtp_error
            text = f"{exc.smtp_code} {said.decode(errors='replace') if isinstance(said, bytes) else said}"
            if exc.smtp_code >= 500:
                raise PermanentFailure(f"the SMTP server refused the message: {text}") from None
            raise TemporaryFailure(f"the SMTP server said try later: {text}") from None
        except (OSError, smtplib.SMTPException) as exc:
            where = f"{self.settings.host}:{self.settings.port}"
            raise TemporaryFailure(f"cannot send through {where}: {type(exc).__name__}: {exc}") from None
        if refused:
            claimed.unknown.extend(f"{a} (refused {c})" for a, (c, _) in refused.items())

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        s = self.settings
        smtp: smtplib.SMTP
        if s.ssl:
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context())
        if s.username and s.password:
            smtp.login(s.username, s.password)
        self._smtp = smtp
        return smtp

    def _close(self) -> None:
        if self._smtp is None:
            return
        with contextlib.suppress(OSError, smtplib.SMTPException):
            self._smtp.quit()
        self._smtp = None


def _addresses(session: Any, recipients: list[Any]) -> tuple[list[str], list[str]]:
    """E-mail addresses for a payload's "to": addresses as they are, usernames through the directory."""
    addresses: list[str] = []
    usernames = [str(r) for r in recipients if "@" not in str(r)]
    found = dict(
        session.execute(
            sa.select(User.username, User.email).where(User.username.in_(usernames), User.active.is_(True))
        ).all()
        if usernames
        else []
    )
    unknown = []
    for recipient in map(str, recipients):
        address = recipient if "@" in recipient else found.get(recipient)
        if address:
            if address not in addresses:
                addresses.append(address)
        else:
            unknown.append(f"{recipient} (no e-mail address)")
    return addresses, unknown


def outbox_job(engine: Engine) -> PeriodicJob | None:
    """The worker's e-mail job, or None (with a log line) when no SMTP host is configured."""
    from engine.worker import PeriodicJob

    settings = SmtpSettings.from_env()
    if settings is None:
        log.info("e-mail is off (no %sHOST): outbox messages wait until it is set", ENV)
        return None
    sender = OutboxSender(engine.db, settings)
    return PeriodicJob("outbox e-mail", sender.send_due, timedelta(seconds=5))
