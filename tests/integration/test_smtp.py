"""E-mail from the outbox through a real SMTP server (aiosmtpd) running inside the test.

What is checked is what arrived at the server: recipients, subject, body, Message-ID; and what
the outbox rows say.  The fake clock moves the backoff along; no test waits or times anything.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from adapters.smtp import OutboxSender, SmtpSettings
from engine.clock import FakeClock
from engine.core import Engine
from engine.errors import InvalidData
from engine.models import Outbox, User
from engine.ports import OutboxNotifier
from tests.conftest import make_engine

ADDRESSES = {"sam.screener": "sam@northshire.example", "mo.manager": "mo@northshire.example"}


@dataclass
class Received:
    envelope_to: list[str]
    message: Message


@dataclass
class Inbox:
    """The messages a handler accepted, in order."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append(Received(list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(r.message["Message-ID"]) for r in self.received]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """An SMTP server on a fixed port that can be stopped and started again (the "server down" tests)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(free_port())
    running.start()
    yield running
    running.stop()


def settings_for(port: int) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, sender="frontdoor@northshire.example", timeout=5)


def with_addresses(engine: Engine) -> Engine:
    with engine.db.transaction() as session:
        for username, address in ADDRESSES.items():
            session.execute(sa.update(User).where(User.username == username).values(email=address))
    return engine


def notify(engine: Engine, recipients: list[str], subject: str, body: str = "Please look at it") -> None:
    """What a command does: the notification goes into the outbox in the command's transaction."""
    with engine.db.transaction() as session:
        OutboxNotifier().notify(
            session, recipients=recipients, subject=subject, body=body, context={"kind": "escalation"}
        )


def rows(engine: Engine) -> list[Outbox]:
    with engine.db.read() as session:
        return list(session.scalars(sa.select(Outbox).order_by(Outbox.id)))


# --------------------------------------------------------------------------- sending


def test_pending_messages_arrive_once_with_their_recipients_subject_and_body(
    any_engine: Engine, server: Server
) -> None:
    engine = with_addresses(any_engine)
    notify(engine, ["sam.screener", "mo.manager"], "Escalation level 1: Record the contact", "It is overdue")
    notify(engine, ["someone@police.example"], "Second message", "Another body")
    sender = OutboxSender(engine.db, settings_for(server.port))

    report = sender.send_due()
    sender.send_due()  # nothing is due any more: nothing goes twice

    assert (report.sent, report.retried, report.failed) == (2, 0, 0)
    first, second = server.inbox.received
    assert sorted(first.envelope_to) == ["mo@northshire.example", "sam@northshire.example"]
    assert first.message["Subject"] == "Escalation level 1: Record the contact"
    assert first.message["From"] == "frontdoor@northshire.example"
    assert first.message.get_payload(decode=True).decode().strip() == "It is overdue"
    assert second.envelope_to == ["someone@police.example"]
    assert second.message["Subject"] == "Second message"
    outbox = rows(engine)
    assert [r.status for r in outbox] == ["sent", "sent"]
    assert all(r.sent_at is not None and r.attempts == 1 for r in outbox)
    assert first.message["Message-ID"].startswith(f"<frontdoor-outbox-{outbox[0].id}.")


def test_server_down_nothing_lost_backoff_then_sent_exactly_once(
    engine: Engine, fake_clock: FakeClock
) -> None:
    with_addresses(engine)
    port = free_port()
    server = Server(port)  # not started: nothing listens on the port
    notify(engine, ["sam.screener"], "While the server was down")
    sender = OutboxSender(engine.db, settings_for(port))

    sender.send_due()
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("pending", 1)
    assert f"127.0.0.1:{port}" in (row.last_error or "")
    assert row.next_attempt_at == fake_clock.now() + timedelta(seconds=30)

    sender.send_due()  # not due yet: not even tried
    assert rows(engine)[0].attempts == 1

    fake_clock.advance(timedelta(seconds=31))
    sender.send_due()  # still down: the wait doubles
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("pending", 2)
    assert row.next_attempt_at == fake_clock.now() + timedelta(seconds=60)

    server.start()
    try:
        sender.send_due()  # up, but the backoff still holds
        assert server.inbox.received == []
        fake_clock.advance(timedelta(seconds=61))
        sender.send_due()
        sender.send_due()
        fake_clock.advance(timedelta(hours=2))
        sender.send_due()
    finally:
        server.stop()

    assert [r.message["Subject"] for r in server.inbox.received] == ["While the server was down"]
    [row] = rows(engine)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)


def test_a_row_left_sending_by_a_dead_sender_is_sent_again_after_the_lease_with_the_same_message_id(
    engine: Engine, fake_clock: FakeClock, server: Server
) -> None:
    with_addresses(engine)
    notify(engine, ["sam.screener"], "Claimed by a sender that died")
    notify(engine, ["mo.manager"], "Claimed by a sender that is still sending")
    with engine.db.transaction() as session:
        dead, busy = session.scalars(sa.select(Outbox).order_by(Outbox.id)).all()
        dead.status, dead.claimed_by, dead.attempts = "sending", "mailer@gone", 1
        dead.claimed_at = fake_clock.now() - timedelta(minutes=11)
        busy.status, busy.claimed_by, busy.attempts = "sending", "mailer@busy", 1
        busy.claimed_at = fake_clock.now() - timedelta(minutes=1)
    sender = OutboxSender(engine.db, settings_for(server.port), lease=timedelta(minutes=10))

    sender.send_due()

    [arrived] = server.inbox.received
    assert arrived.message["Subject"] == "Claimed by a sender that died"
    dead_row, busy_row = rows(engine)
    assert arrived.message["Message-ID"] == sender.message_id_of(dead_row)
    assert (dead_row.status, dead_row.attempts) == ("sent", 2)
    assert (busy_row.status, busy_row.claimed_by) == ("sending", "mailer@busy")  # not ours to touch


def test_nobody_to_send_to_is_a_permanent_failure_with_the_reason(engine: Engine, server: Server) -> None:
    notify(engine, ["tara.team"], "No address for this user")  # demo staff have no e-mail address
    sender = OutboxSender(engine.db, settings_for(server.port))

    report = sender.send_due()

    assert report.failed == 1 and server.inbox.received == []
    [row] = rows(engine)
    assert row.status == "failed"
    assert "tara.team" in (row.last_error or "")


def test_a_recipient_without_an_address_is_noted_and_the_others_still_get_it(
    engine: Engine, server: Server
) -> None:
    with_addresses(engine)
    notify(engine, ["sam.screener", "tara.team"], "Half addressed")

    OutboxSender(engine.db, settings_for(server.port)).send_due()

    [arrived] = server.inbox.received
    assert arrived.envelope_to == ["sam@northshire.example"]
    [row] = rows(engine)
    assert row.status == "sent" and row.last_error == "not sent to tara.team (no e-mail address)"


class Refusing(Inbox):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return "550 No such mailbox here"


def test_a_message_the_server_refuses_for_good_is_failed_not_retried(engine: Engine) -> None:
    inbox = Refusing()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        notify(engine, ["nobody@nowhere.example"], "Refused")
        OutboxSender(engine.db, settings_for(controller.port)).send_due()
    finally:
        controller.stop()
    [row] = rows(engine)
    assert row.status == "failed" and "550" in (row.last_error or "")


@pytest.mark.postgres
def test_two_senders_at_once_never_send_a_row_twice(postgres_url: str, fake_clock: FakeClock) -> None:
    engine = with_addresses(make_engine(postgres_url))
    server = Server(free_port())
    server.start()
    try:
        for number in range(40):
            notify(engine, ["sam.screener"], f"Message {number}")
        senders = [
            OutboxSender(engine.db, settings_for(server.port), name=f"mailer-{n}", batch=1000)
            for n in range(2)
        ]
        errors: list[BaseException] = []

        def run(sender: OutboxSender) -> None:
            try:
                sender.send_due()
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.stop()
        engine.db.dispose()

    assert errors == []
    ids = server.inbox.message_ids()
    assert len(ids) == 40 and len(set(ids)) == 40
    outbox = rows(engine)
    assert {r.status for r in outbox} == {"sent"} and {r.attempts for r in outbox} == {1}
    assert {r.claimed_by for r in outbox} <= {"mailer-0", "mailer-1"}


# ---------------------------------------------------------------------- configuration


def test_settings_come_from_the_environment_and_bad_ones_say_what_to_fix() -> None:
    assert SmtpSettings.from_env({}) is None  # e-mail off: the outbox keeps its rows
    settings = SmtpSettings.from_env(
        {
            "FRONTDOOR_SMTP_HOST": "smtp.northshire.example",
            "FRONTDOOR_SMTP_STARTTLS": "1",
            "FRONTDOOR_SMTP_USERNAME": "frontdoor",
            "FRONTDOOR_SMTP_PASSWORD": "secret",
            "FRONTDOOR_SMTP_FROM": "frontdoor@northshire.example",
        }
    )
    assert settings is not None
    assert (settings.port, settings.starttls, settings.ssl) == (587, True, False)
    assert "secret" not in repr(settings)
    ssl_settings = SmtpSettings.from_env({"FRONTDOOR_SMTP_HOST": "h", "FRONTDOOR_SMTP_SSL": "yes"})
    assert ssl_settings is not None and ssl_settings.port == 465

    for bad, named in (
        ({"FRONTDOOR_SMTP_PORT": "twenty-five"}, "FRONTDOOR_SMTP_PORT"),
        ({"FRONTDOOR_SMTP_STARTTLS": "1", "FRONTDOOR_SMTP_SSL": "1"}, "not both"),
        ({"FRONTDOOR_SMTP_USERNAME": "only-me"}, "FRONTDOOR_SMTP_PASSWORD"),
        ({"FRONTDOOR_SMTP_FROM": "not-an-address"}, "FRONTDOOR_SMTP_FROM"),
    ):
        with pytest.raises(InvalidData, match=named):
            SmtpSettings.from_env({"FRONTDOOR_SMTP_HOST": "h", **bad})


def test_login_uses_the_configured_credentials(engine: Engine) -> None:
    from aiosmtpd.smtp import AuthResult

    logins: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password == b"right")

    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=False,  # the test server has no certificate; production uses STARTTLS or SSL
    )
    controller.start()
    try:
        with_addresses(engine)
        notify(engine, ["sam.screener"], "Needs a login")
        # After a refused login this test server stalls until the client gives up: a short timeout.
        wrong = SmtpSettings(
            "127.0.0.1",
            controller.port,
            username="frontdoor",
            password="wrong",
            sender="f@x.example",
            timeout=1,
        )
        OutboxSender(engine.db, wrong).send_due()
        assert rows(engine)[0].status == "pending"  # a wrong password is kept for retry, not lost
        with engine.db.transaction() as session:
            session.execute(sa.update(Outbox).values(next_attempt_at=None))
        right = SmtpSettings(
            "127.0.0.1", controller.port, username="frontdoor", password="right", sender="f@x.example"
        )
        OutboxSender(engine.db, right).send_due()
    finally:
        controller.stop()
    assert logins == [("frontdoor", "wrong"), ("frontdoor", "right")]
    assert [r.message["Subject"] for r in inbox.received] == ["Needs a login"]


def test_frontdoor_worker_once_sends_the_outbox_when_smtp_is_configured(
    engine: Engine, server: Server, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`frontdoor worker` (web/cli.py) runs the e-mail job beside the timers (engine imports no adapter)."""
    from click.testing import CliRunner

    from web.cli import adapter_hooks, cli

    with_addresses(engine)
    notify(engine, ["sam.screener"], "Sent by the worker")
    monkeypatch.setenv("FRONTDOOR_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("FRONTDOOR_SMTP_PORT", str(server.port))
    monkeypatch.setenv("FRONTDOOR_SMTP_FROM", "frontdoor@northshire.example")

    result = CliRunner().invoke(cli, ["--database-url", sqlite_url, "worker", "--once"], obj=adapter_hooks())

    assert result.exit_code == 0, result.output
    assert [r.message["Subject"] for r in server.inbox.received] == ["Sent by the worker"]
    assert rows(engine)[0].status == "sent"
