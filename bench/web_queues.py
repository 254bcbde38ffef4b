"""Work-queue pages and API calls under a big store: p50 / p95, server-side, on SQLite and PostgreSQL.

Run: ``.venv/bin/python bench/web_queues.py [--quick] [--requests N] [--store sqlite|postgres|both]``.
Prints figures and exits 0 whether or not the targets are met (a miss is printed, never an exit
status).  Not a test.

The store: ``Engine.init(demo=True)`` (schema, roles, demo staff, the council's processes), then,
with bulk SQL (Core executemany on SQLite, COPY on PostgreSQL), 100,000 open cases (``--quick``:
10,000) and 300,000 tasks (30,000) spread over the teams mash / assessment / longterm / edt, over
the steps of the deployed processes (their lanes' roles), over the demo users and synthetic workers
(inserted with their memberships), due from 10 days ago to 20 days ahead (a third overdue, a few
undated), a share escalated (level 1 or 2), 15% completed, 25% claimed, 60% waiting unclaimed; one
case in ten has a sibling (case_link both ways, their tasks due at the same times, so siblings meet
on a page).  Each case has one process_instance row with state '{}' (the task foreign key needs it;
the pages must never read it: the bench checks that no captured statement selects it).
sara.social holds exactly 300 open tasks.
SQLite is measured as shipped (no ANALYZE: the product never runs it; ``--sqlite-analyze`` to
compare); PostgreSQL after VACUUM ANALYZE (what autovacuum does shortly after a bulk load).

What is measured, through Flask's test client on ``create_app(engine=...)`` (no HTTP server), each
person signed in through POST /sign-in, the API with a token from ``web.tokens.create_token``:

- the team queue GET /teams/<team>/queue as a manager (mash), a practitioner (assessment) and a
  police partner (mash);
- My tasks GET /tasks/mine as sara.social (300 open tasks);
- GET /api/tasks?team=... (as a practitioner and as a manager), GET /api/tasks?user=sara.social and
  GET /api/escalations as the MASH manager;
- beside the issue's figure (which names those pages and calls), counted apart in the summary: the
  pages with ?due=overdue and ?child=<surname> (a surname shared by 1,681 children: far more than
  a council's real search finds, so the worst case of that filter), and the practitioner's third
  page (a later page reads the tasks before it as well).

Each ``--requests`` times (200; ``--quick`` 60) after 5 warm-up requests, cut short after
REQUEST_BUDGET_S seconds (never fewer than 20; the number taken is printed): wall clock p50 / p95.
Target: p95 <= 50 ms.  Beside it: this process's CPU time per request (less disturbed by other load
on the machine), the SQL statements per request and their execute() time (an event listener on the
engine; on SQLite the fetching of rows after execute() is not in it), the template time (Flask's
template signals), and the rows the response showed.

The queue query alone: the statements of one captured request that read the ``task`` table (so
exactly the SQL the page or API call runs), replayed together in one read transaction, p50 / p95.
Target: p95 <= 20 ms.  ``Engine.tasks(team=)`` / ``Engine.tasks(user=)`` (the CLI's queue read,
not the pages') are timed beside them for reference.

Plans: EXPLAIN QUERY PLAN (SQLite) / EXPLAIN (ANALYZE, BUFFERS) (PostgreSQL) of each distinct
task-table statement: which index it uses (the partial indexes of the open tasks of migration 0002:
ix_task_team_due_open, ix_task_assignee_due_open, ix_task_offered, ix_task_escalated; ix_task_case),
whether it sorts, or scans.

What if: other query shapes and indexes timed on the same store (indexes made in the bench's own
database and dropped again, unless the schema has them already): the earlier shapes (bound statuses,
one sort), UNION ALL per status, capped counts, the partner's two reads, the API's order, the child
filter in two reads, partial indexes on the open tasks, pg_trgm.  This is where the recommendations
came from (web/queues.py, web/api.py and migration 0002 follow them); ``--no-whatif`` skips it.

The machine: a fixed pure-Python loop is timed at the start and the end (beside the load average),
so that a run on a busy machine can be told from a slow page.

Where the time goes: for the first missed scenario of each kind (``--max-profiles``), the
request's slowest statements, statements run more than once, and a cProfile (own time, and the
project's functions by cumulative time).

``--keep`` keeps the seeded stores and prints their URLs; ``--url URL`` measures such a store again
without seeding (e.g. after web/queues.py changes).  On a busy machine (the load average is
printed at start and end) wall-clock figures wobble: compare the CPU columns, and re-run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `engine` and `web` importable
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

POSTGRES_SERVER = os.environ.get(
    "FRONTDOOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
PAGE_TARGET_MS = 50.0
QUERY_TARGET_MS = 20.0
PASSWORD = "bench-password"
# Time caps, so that a very slow scenario cannot stretch the run (at least 20 samples are always taken;
# the number actually taken is printed).
REQUEST_BUDGET_S = 8.0
QUERY_BUDGET_S = 4.0
WHAT_IF_BUDGET_S = 2.0
PROFILE_BUDGET_S = 5.0
ME = "sara.social"  # the practitioner whose "My tasks" holds MY_TASKS open tasks
MY_TASKS = 300
PER_HOLDER = 300  # open claimed tasks per worker, roughly: decides how many synthetic workers
TEAMS = {"mash": 0.30, "assessment": 0.30, "longterm": 0.25, "edt": 0.15}
# The roles whose work each team's queue holds (edt: the contact steps, done by the EDT worker).
TEAM_ROLES = {
    "mash": {"contact_officer", "mash_manager", "police_partner", "health_partner", "education_partner"},
    "assessment": {"team_manager", "social_worker", "section47_lead"},
    "longterm": {"team_manager", "social_worker", "section47_lead"},
    "edt": {"edt_worker"},
}
FIRST_NAMES = (
    "Amara Ben Cara Dylan Ella Finn Grace Harry Isla Jack Kai Leah Max Nia Oscar Poppy Quinn Rosa Sam "
    "Tia Umar Vera Will Xena Yusuf Zara Alfie Bella Callum Daisy Ethan Freya George Hana Ivy Jude "
    "Kara Leon Mia Noah"
)
FIRST = FIRST_NAMES.split()
LAST_NAMES = (
    "Walker Okafor Smith Jones Taylor Brown Williams Wilson Johnson Davies Patel Wright Robinson "
    "Thompson Evans Green Hall Wood Hughes Edwards Clarke Jackson Turner Hill Moore Cooper Ward "
    "Morris King Watson Harris Lee Khan Ali Baker Allen Young Mitchell Phillips Campbell Kelly Bell "
    "Price Shaw Mills Ellis Cox Rose Gray Hunt Nowak Kowalski Murphy Byrne Singh Begum Ahmed Lewis "
    "Scott Adams"
)
LAST = LAST_NAMES.split()
CHILD_FILTER = "okafor"  # one surname in 60: about 1,700 cases


# ------------------------------------------------------------------------------------ statistics


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def budget(count: int, seconds: float, minimum: int = 20) -> Iterator[int]:
    """range(count), cut short once ``seconds`` have passed and ``minimum`` iterations are done."""
    started = time.perf_counter()
    for i in range(count):
        if i >= minimum and time.perf_counter() - started > seconds:
            return
        yield i


def load_average() -> str:
    try:
        average = " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" (CPUs: {os.cpu_count()})"
    except OSError:
        average = "unknown"
    return f"{average}; reference loop {reference_loop_ms():.0f} ms"


def reference_loop_ms() -> float:
    """A million additions in pure Python, best of three: about 30-60 ms on an idle machine of today;
    several times that when other processes share the CPUs, and every figure here with it."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


# ------------------------------------------------------------------------------------ the store


@contextmanager
def sqlite_store(tmp: Path) -> Iterator[tuple[str, str]]:
    path = tmp / "web_queues.db"
    yield f"sqlite:///{path}", f"SQLite (WAL) {path}"


@contextmanager
def postgres_store(keep: bool = False) -> Iterator[tuple[str, str]]:
    name = f"frontdoor_bench_web_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    with admin.connect() as connection:
        version = connection.execute(sa.text("SHOW server_version")).scalar_one()
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_SERVER}/{name}", f"PostgreSQL {version} database {name}"
    finally:
        if keep:
            print(f"\nKept: {POSTGRES_SERVER}/{name} (re-measure with --url; drop it yourself afterwards)")
        else:
            with admin.connect() as connection:
                connection.execute(
                    sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                    {"n": name},
                )
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


_BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"


@dataclass(frozen=True)
class Step:
    process_key: str
    element_id: str
    name: str
    lane: str | None
    role: str


def deployed_steps(engine: Any) -> list[Step]:
    """Every user task of every deployed process, with its lane's role."""
    from lxml import etree

    from engine.models import ProcessDefinition

    steps: list[Step] = []
    with engine.db.read() as session:
        for key, xml in session.execute(sa.select(ProcessDefinition.key, ProcessDefinition.bpmn_xml)):
            root = etree.fromstring(xml.encode("utf-8"), etree.XMLParser(resolve_entities=False))
            lanes = {
                (ref.text or "").strip(): lane.get("name") or ""
                for lane in root.iter(f"{_BPMN}lane")
                for ref in lane.iter(f"{_BPMN}flowNodeRef")
            }
            for task in root.iter(f"{_BPMN}userTask"):
                lane = lanes.get(task.get("id"))
                role = engine.roles.for_lane(session, lane) if lane else None
                if role is not None:
                    steps.append(
                        Step(key, task.get("id"), task.get("name") or task.get("id"), lane, role.key)
                    )
    return steps


@dataclass
class Seeded:
    cases: int
    tasks: int
    open_tasks: int
    users: int
    links: int
    seconds: float
    analyze_seconds: float
    per_team: dict[str, int]
    my_open: int
    child_cases: int
    notes: list[str] = field(default_factory=list)


def seed(engine: Any, n_cases: int, n_tasks: int, analyze: bool) -> Seeded:
    """The cases, instances, workers, memberships, tasks and sibling links, in bulk."""
    from engine.models import (
        CaseLink,
        CaseRecord,
        Membership,
        ProcessDefinition,
        ProcessInstance,
        Role,
        Task,
        Team,
        User,
    )

    started = time.perf_counter()
    rng = random.Random(20240917)
    now = datetime.now(UTC).replace(microsecond=0)
    steps = deployed_steps(engine)
    by_team: dict[str, list[Step]] = {}
    for team, roles in TEAM_ROLES.items():
        if team == "edt":
            by_team[team] = [
                Step(s.process_key, s.element_id, s.name, "EDT worker", "edt_worker")
                for s in steps
                if s.process_key == "contact" and s.role == "contact_officer"
            ]
        else:
            by_team[team] = [s for s in steps if s.role in roles]
        assert by_team[team], f"no deployed steps for {team}"
    team_keys, team_weights = list(TEAMS), list(TEAMS.values())

    with engine.db.read() as session:
        definition_id = session.scalar(
            sa.select(sa.func.min(ProcessDefinition.id)).where(ProcessDefinition.key == "contact")
        )
        team_ids = dict(session.execute(sa.select(Team.key, Team.id)).all())
        role_ids = dict(session.execute(sa.select(Role.key, Role.id)).all())
        demo_memberships: dict[tuple[str, str], list[str]] = defaultdict(list)
        demo_first: dict[str, tuple[str, str]] = {}
        for username, team, role in session.execute(
            sa.select(User.username, Team.key, Role.key)
            .join(Membership, Membership.user_id == User.id)
            .join(Team, Team.id == Membership.team_id)
            .join(Role, Role.id == Membership.role_id)
            .order_by(User.id, Membership.id)
        ):
            if team in TEAMS and role in TEAM_ROLES[team]:
                demo_first.setdefault(username, (team, role))
    # Each demo user takes work in one group only (their first membership), so ME holds exactly 300.
    for username, group in demo_first.items():
        demo_memberships[group].append(username)

    # ---- cases: a team, a child, a due-time base (siblings share it), in pairs of siblings
    case_team = [rng.choices(team_keys, team_weights)[0] for _ in range(n_cases)]
    case_name = [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(n_cases)]
    case_base = [rng.uniform(-10 * 86400, 20 * 86400) for _ in range(n_cases)]
    links: list[tuple[int, int]] = []
    for c in range(0, n_cases - 1, 2):
        if rng.random() < 0.10:  # one case in ten has a sibling: a pair of cases
            case_team[c + 1] = case_team[c]
            case_base[c + 1] = case_base[c]
            case_name[c + 1] = f"{rng.choice(FIRST)} {case_name[c].split()[1]}"
            links.append((c, c + 1))
    child_cases = sum(1 for n in case_name if CHILD_FILTER in n.lower())

    # ---- tasks: (case, team, step, status, due)
    tasks: list[dict[str, Any]] = []
    for i in range(n_tasks):
        c = i % n_cases
        j = i // n_cases
        team = case_team[c] if rng.random() < 0.85 else rng.choices(team_keys, team_weights)[0]
        step = rng.choice(by_team[team])
        roll = rng.random()
        status = "completed" if roll < 0.15 else "claimed" if roll < 0.40 else "ready"
        due_at = None if rng.random() < 0.03 else now + timedelta(seconds=case_base[c] + j * 3600)
        tasks.append({"c": c, "team": team, "step": step, "status": status, "due_at": due_at})

    # ---- holders: per (team, role), one worker per ~PER_HOLDER claimed tasks; ME exactly MY_TASKS
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        if t["status"] != "ready":
            groups[(t["team"], t["step"].role)].append(i)
    synthetic: list[tuple[str, str, str, str]] = []  # username, display, employment, (team, role)
    synthetic_groups: list[tuple[str, str]] = []
    assignee: dict[int, str] = {}
    my_open = 0
    serial = 0
    for group, indices in sorted(groups.items()):
        claimed = [i for i in indices if tasks[i]["status"] == "claimed"]
        completed = [i for i in indices if tasks[i]["status"] == "completed"]
        holders = list(demo_memberships.get(group, []))
        if ME in holders:
            holders.remove(ME)
            mine, claimed = claimed[:MY_TASKS], claimed[MY_TASKS:]
            for i in mine:
                assignee[i] = ME
            my_open = len(mine)
        wanted = max(1, round(len(claimed) / PER_HOLDER))
        while len(holders) < wanted:
            serial += 1
            username = f"bench.w{serial:04d}"
            display = f"{rng.choice(FIRST)} {rng.choice(LAST)} ({serial:04d})"
            employment = "agency" if rng.random() < 0.2 else "permanent"
            synthetic.append((username, display, employment, group[0]))
            synthetic_groups.append(group)
            holders.append(username)
        for k, i in enumerate(claimed):
            assignee[i] = holders[k % len(holders)]
        everyone = holders + ([ME] if ME in demo_memberships.get(group, []) else [])
        for i in completed:
            assignee[i] = rng.choice(everyone)

    worker: list[str | None] = [None] * n_cases
    for i, t in enumerate(tasks):
        if t["status"] == "claimed" and t["team"] == case_team[t["c"]] and worker[t["c"]] is None:
            worker[t["c"]] = assignee[i]

    # ---- rows
    opened = now - timedelta(days=40)
    dialect = engine.db.dialect
    case_rows = [
        {
            "id": c + 1,
            "reference": f"CH-{c + 1:06d}",
            "subject_name": case_name[c],
            "team_key": case_team[c],
            "worker": worker[c],
            "status": "open",
            "opened_at": opened + timedelta(seconds=c),
            "closed_at": None,
            "closed_reason": None,
        }
        for c in range(n_cases)
    ]
    instance_rows = [
        {
            "id": c + 1,
            "definition_id": definition_id,
            "called_definitions": {},
            "case_id": c + 1,
            "status": "running",
            "state": "{}",
            "revision": 1,
            "started_at": opened + timedelta(seconds=c),
            "started_by": "bench",
            "ended_at": None,
        }
        for c in range(n_cases)
    ]
    task_rows = []
    for i, t in enumerate(tasks):
        step: Step = t["step"]
        due_at = t["due_at"]
        level = 0
        if due_at is not None and due_at < now and t["status"] != "completed" and rng.random() < 0.35:
            level = 1 if rng.random() < 0.7 else 2
        task_rows.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "instance_id": t["c"] + 1,
                "case_id": t["c"] + 1,
                "process_key": step.process_key,
                "element_id": step.element_id,
                "name": step.name,
                "lane": step.lane,
                "role_key": step.role,
                "team_key": t["team"],
                "assignee": assignee.get(i),
                "status": t["status"],
                "created_at": (due_at or now) - timedelta(days=5),
                "due_at": due_at,
                "escalation_level": level,
                "escalated_at": (due_at + timedelta(hours=4)) if level else None,
                "form_key": None,
                "ui_form_key": None,
                "instructions": f"{step.name}. See the practice guidance for this step.",
                "completed_by": assignee.get(i) if t["status"] == "completed" else None,
                "completed_at": now - timedelta(hours=1) if t["status"] == "completed" else None,
                "outcome": None,
                "draft": None,
                "draft_saved_by": None,
                "draft_saved_at": None,
            }
        )
    link_rows = []
    for a, b in links:
        for x, y in ((a, b), (b, a)):
            link_rows.append(
                {"case_id": x + 1, "linked_case_id": y + 1, "kind": "sibling", "created_at": opened}
            )

    with engine.db.transaction() as session:
        connection = session.connection()
        user_ids = {}
        for username, display, employment, _team in synthetic:
            user_ids[username] = connection.execute(
                sa.insert(User)
                .values(
                    username=username,
                    display_name=display,
                    email=None,
                    qualified=True,
                    employment=employment,
                    active=True,
                )
                .returning(User.id)
            ).scalar_one()
        if synthetic:
            connection.execute(
                sa.insert(Membership),
                [
                    {"user_id": user_ids[u], "team_id": team_ids[g[0]], "role_id": role_ids[g[1]]}
                    for (u, _d, _e, _t), g in zip(synthetic, synthetic_groups, strict=True)
                ],
            )
        if dialect == "postgresql":
            _copy(connection, CaseRecord.__table__, case_rows)
            _copy(connection, ProcessInstance.__table__, instance_rows)
            _copy(connection, Task.__table__, task_rows)
            _copy(connection, CaseLink.__table__, link_rows, with_id=False)
            for table in ("case_record", "process_instance", "case_link"):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {table}))"
                )
        else:
            for table, rows in (
                (CaseRecord.__table__, case_rows),
                (ProcessInstance.__table__, instance_rows),
                (Task.__table__, task_rows),
                (CaseLink.__table__, link_rows),
            ):
                for k in range(0, len(rows), 20000):
                    connection.execute(table.insert(), rows[k : k + 20000])
    seeded = time.perf_counter() - started

    t0 = time.perf_counter()
    notes = []
    if dialect == "postgresql":
        with engine.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
        notes.append("VACUUM ANALYZE after the load (what autovacuum does shortly after)")
    elif analyze:
        with engine.db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        notes.append("ANALYZE run (--sqlite-analyze): not what the product ships")
    else:
        notes.append("no ANALYZE (as shipped: the product never runs it on SQLite)")
    per_team: dict[str, int] = defaultdict(int)
    for t in tasks:
        if t["status"] != "completed":
            per_team[t["team"]] += 1
    return Seeded(
        cases=n_cases,
        tasks=n_tasks,
        open_tasks=sum(per_team.values()),
        users=len(synthetic),
        links=len(link_rows),
        seconds=seeded,
        analyze_seconds=time.perf_counter() - t0,
        per_team=dict(per_team),
        my_open=my_open,
        child_cases=child_cases,
        notes=notes,
    )


def _copy(
    connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], with_id: bool = True
) -> None:
    """COPY rows into a PostgreSQL table (instants as naive UTC, JSON as text)."""
    if not rows:
        return
    columns = [c.name for c in table.columns if with_id or c.name != "id"]
    json_columns = {c.name for c in table.columns if isinstance(c.type, (sa.JSON,)) or "JSON" in str(c.type)}
    raw = connection.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            values = []
            for name in columns:
                value = row.get(name)
                if isinstance(value, datetime):
                    value = value.astimezone(UTC).replace(tzinfo=None)
                elif name in json_columns and value is not None:
                    value = json.dumps(value)
                values.append(value)
            copy.write_row(values)


# ------------------------------------------------------------------------------------ instruments


class SQLMeter:
    """Counts and times the statements the engine's connections run; can capture them."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self.seconds = 0.0
        self.capture: list[tuple[str, Any, float]] | None = None
        self._started: dict[int, float] = {}
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def _after(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        took = time.perf_counter() - self._started.pop(id(cursor), time.perf_counter())
        self.count += 1
        self.seconds += took
        if self.capture is not None:
            self.capture.append((statement, parameters, took))

    def reset(self) -> None:
        self.count, self.seconds = 0, 0.0


class RenderMeter:
    """Time spent rendering templates (outermost render only)."""

    def __init__(self, app: Any) -> None:
        from flask import before_render_template, template_rendered

        self.seconds = 0.0
        self._depth = 0
        self._t0 = 0.0
        before_render_template.connect(self._before, app)
        template_rendered.connect(self._after, app)

    def _before(self, sender: Any, **extra: Any) -> None:
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1

    def _after(self, sender: Any, **extra: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._t0


STATE_COLUMN = re.compile(r"process_instance\.state\b", re.IGNORECASE)
TASK_TABLE = re.compile(r"\bFROM task\b|\bJOIN task\b", re.IGNORECASE)


def reads_task_table(statement: str) -> bool:
    return bool(TASK_TABLE.search(statement))


# ------------------------------------------------------------------------------------ scenarios


@dataclass
class Scenario:
    label: str
    user: str
    path: str
    kind: str  # page | api
    # The figure is for the team queue and my-tasks pages and their API calls as they open;
    # the filters and a later page are measured beside them, and their misses counted apart.
    figure: bool = True


@dataclass
class Result:
    scenario: Scenario
    times: list[float]
    rows: int
    statements: float
    sql_ms: float
    render_ms: float
    status: int
    target: float = PAGE_TARGET_MS
    captured: list[tuple[str, Any, float]] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return pct(self.times, 50)

    @property
    def p95(self) -> float:
        return pct(self.times, 95)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.p95 <= self.target


def page_size() -> int:
    from web.queues import LIMIT

    return LIMIT


def scenarios() -> list[Scenario]:
    child = f"?child={CHILD_FILTER}"
    return [
        Scenario("Team queue, manager: mash", "mo.manager", "/teams/mash/queue", "page"),
        Scenario("  ... ?due=overdue", "mo.manager", "/teams/mash/queue?due=overdue", "page", False),
        Scenario(f"  ... {child}", "mo.manager", f"/teams/mash/queue{child}", "page", False),
        Scenario("Team queue, practitioner: assessment", ME, "/teams/assessment/queue", "page"),
        Scenario("  ... ?due=overdue", ME, "/teams/assessment/queue?due=overdue", "page", False),
        Scenario(f"  ... {child}", ME, f"/teams/assessment/queue{child}", "page", False),
        Scenario("  ... ?page=3", ME, "/teams/assessment/queue?page=3", "page", False),
        Scenario("Team queue, police partner: mash", "pat.police", "/teams/mash/queue", "page"),
        Scenario(f"My tasks ({ME}, {MY_TASKS} held)", ME, "/tasks/mine", "page"),
        Scenario("  ... ?due=overdue", ME, "/tasks/mine?due=overdue", "page", False),
        Scenario("API tasks?team=assessment (practitioner)", ME, "/api/tasks?team=assessment", "api"),
        Scenario("API tasks?team=mash (manager)", "mo.manager", "/api/tasks?team=mash", "api"),
        Scenario(f"API tasks?user={ME}", ME, f"/api/tasks?user={ME}", "api"),
        Scenario("API escalations (manager: mash)", "mo.manager", "/api/escalations", "api"),
    ]


ROW_MARK = re.compile(r'<tr class="govuk-table__row" id="task-')


def rows_in(response: Any, kind: str) -> int:
    if kind == "api":
        try:
            return len(response.get_json()["items"])
        except Exception:
            return -1
    return len(ROW_MARK.findall(response.get_data(as_text=True)))


class Bench:
    def __init__(self, engine: Any, requests: int) -> None:
        from engine.models import User
        from web import create_app, freeze_startup_heap
        from web.auth import hasher
        from web.tokens import create_token

        self.engine = engine
        self.requests = requests
        self.meter = SQLMeter(engine.db.engine)
        self.app = create_app(
            {
                "TESTING": True,
                "WTF_CSRF_ENABLED": False,
                "SECRET_KEY": "bench",
                "RATELIMIT_ENABLED": False,
                "SESSION_COOKIE_SECURE": False,
            },
            engine=engine,
        )
        # As `frontdoor web` and gunicorn.conf.py do once the app is built.
        freeze_startup_heap()
        self.render = RenderMeter(self.app)
        users = sorted({s.user for s in scenarios()})
        with engine.db.transaction() as session:
            session.execute(
                sa.update(User).where(User.username.in_(users)).values(password_hash=hasher.hash(PASSWORD))
            )
        self.clients: dict[str, Any] = {}
        self.tokens: dict[str, str] = {}
        for username in users:
            client = self.app.test_client()
            response = client.post("/sign-in", data={"username": username, "password": PASSWORD})
            assert response.status_code == 302, f"sign-in as {username}: {response.status_code}"
            self.clients[username] = client
            self.tokens[username] = create_token(
                engine.db, f"bench-{username}-{uuid.uuid4().hex[:8]}", username
            )

    def call(self, scenario: Scenario) -> Any:
        client = self.clients[scenario.user]
        if scenario.kind == "api":
            return client.get(
                scenario.path, headers={"Authorization": f"Bearer {self.tokens[scenario.user]}"}
            )
        return client.get(scenario.path)

    def measure(self, scenario: Scenario) -> Result:
        for _ in range(5):
            response = self.call(scenario)
        status = response.status_code
        rows = rows_in(response, scenario.kind)
        # One captured request: the SQL it runs (for the replay and the plans).
        self.meter.capture = []
        self.call(scenario)
        captured, self.meter.capture = self.meter.capture, None
        times: list[float] = []
        cpu: list[float] = []
        self.meter.reset()
        self.render.seconds = 0.0
        for _ in budget(self.requests, REQUEST_BUDGET_S):
            c0 = time.thread_time()
            t0 = time.perf_counter()
            response = self.call(scenario)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
            status = status if response.status_code == 200 else response.status_code
        n = len(times)
        return Result(
            scenario,
            times,
            rows,
            self.meter.count / n,
            self.meter.seconds * 1000 / n,
            self.render.seconds * 1000 / n,
            status,
            captured=captured,
            cpu=cpu,
        )

    def replay(self, statements: list[tuple[str, Any, float]], iterations: int) -> list[float]:
        """The statements together in one read transaction, rows fetched, per iteration (ms)."""
        times = []
        for _ in budget(iterations, QUERY_BUDGET_S):
            t0 = time.perf_counter()
            with self.engine.db.read() as session:
                connection = session.connection()
                for statement, parameters, _ in statements:
                    connection.exec_driver_sql(statement, parameters).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
        return times

    def timed(self, function: Callable[[], Any], iterations: int) -> list[float]:
        times = []
        for _ in budget(iterations, QUERY_BUDGET_S):
            t0 = time.perf_counter()
            function()
            times.append((time.perf_counter() - t0) * 1000)
        return times

    def profile(self, scenario: Scenario, requests: int = 20) -> str:
        profiler = cProfile.Profile()
        profiler.enable()
        done = 0
        for _ in budget(requests, PROFILE_BUDGET_S, minimum=3):
            self.call(scenario)
            done += 1
        profiler.disable()
        requests = done
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(10)
        own = io.StringIO()
        pstats.Stats(profiler, stream=own).sort_stats("cumulative").print_stats(r"/(web|engine)/", 12)
        return _trim_stats(out.getvalue(), requests) + "\n" + _trim_stats(own.getvalue(), requests)


def _trim_stats(text: str, requests: int) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    keep = []
    started = False
    for line in lines:
        if line.lstrip().startswith("ncalls"):
            started = True
            keep.append(f"      (over {requests} requests) " + line.strip())
            continue
        if started:
            keep.append("      " + line.replace(str(ROOT) + "/", "").strip())
    return "\n".join(keep)


# ------------------------------------------------------------------------------------ plans


def explain(engine: Any, statement: str, parameters: Any) -> list[str]:
    with engine.db.read() as session:
        connection = session.connection()
        if engine.db.dialect == "postgresql":
            rows = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters
            ).fetchall()
            return [r[0] for r in rows]
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
        depth: dict[int, int] = {0: -1}
        out = []
        for node, parent, _unused, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            out.append("  " * depth[node] + detail)
        return out


def plan_summary(lines: list[str], postgres: bool) -> tuple[str, list[str]]:
    text = "\n".join(lines)
    known = (
        "ix_task_team_due_open",
        "ix_task_assignee_due_open",
        "ix_task_offered",
        "ix_task_escalated",
        "ix_task_team_open",
        "ix_task_assignee_open",
        "ix_task_case",
        "_trgm",
    )
    used = [ix for ix in known if ix in text]
    flags = []
    if postgres:
        if re.search(r"^\s*(->\s*)?(Incremental )?Sort\b", text, re.MULTILINE):
            flags.append("SORTS")
        if re.search(r"Seq Scan on task\b", text):
            flags.append("SEQ SCAN task")
        if re.search(r"Seq Scan on case_record\b", text):
            flags.append("seq scan case_record")
        if re.search(r"Seq Scan on process_instance\b", text):
            flags.append("seq scan process_instance")
    else:
        if "TEMP B-TREE FOR ORDER BY" in text:
            flags.append("SORTS (temp b-tree)")
        if re.search(r"SCAN task\b(?! USING)", text):
            flags.append("FULL SCAN task")
        if re.search(r"SCAN case_record\b(?! USING)", text):
            flags.append("full scan case_record")
    head = ("uses " + ", ".join(used)) if used else "NO task index"
    if postgres:
        kept = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith(
                ("Planning", "Buffers", "Heap Fetches", "Sort Method", "Worker", "Rows Removed")
            ):
                if stripped.startswith(("Planning Time", "Rows Removed", "Sort Method", "Heap Fetches")):
                    kept.append(line)
                continue
            kept.append(line)
        lines = kept
    return head + ("; " + ", ".join(flags) if flags else ""), lines


def short_sql(statement: str, width: int = 150) -> str:
    text = re.sub(r"\s+", " ", statement).strip()
    text = re.sub(r"SELECT .*? FROM", "SELECT … FROM", text, count=1) if len(text) > width else text
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------------------ one store


def run_store(url: str, label: str, args: argparse.Namespace, n_cases: int, n_tasks: int) -> dict[str, Any]:
    from engine.core import Engine
    from engine.db import Database

    print(f"\n{'=' * 110}\n{label}\n{'=' * 110}", flush=True)
    db = Database(url)
    engine = Engine(db)
    if args.url:
        print(f"Reusing the store at {url} (seeded earlier with --keep): no seeding.", flush=True)
    else:
        seed_and_report(engine, args, n_cases, n_tasks)
    measure_store(engine, args)
    engine.db.dispose()
    return RESULTS.pop()


RESULTS: list[dict[str, Any]] = []


def seed_and_report(engine: Any, args: argparse.Namespace, n_cases: int, n_tasks: int) -> None:
    t0 = time.perf_counter()
    engine.init(demo=True)
    init_s = time.perf_counter() - t0
    seeded = seed(engine, n_cases, n_tasks, args.sqlite_analyze)
    print(
        f"Seeding (not in the figures): Engine.init {init_s:.1f} s; {seeded.cases:,} open cases, "
        f"{seeded.tasks:,} tasks ({seeded.open_tasks:,} open: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(seeded.per_team.items()))
        + f"), {seeded.users} synthetic workers, {seeded.links:,} case_link rows in {seeded.seconds:.1f} s; "
        f"statistics {seeded.analyze_seconds:.1f} s ({'; '.join(seeded.notes)}).\n"
        f"{ME} holds {seeded.my_open} open tasks; '{CHILD_FILTER}' matches {seeded.child_cases:,} cases.",
        flush=True,
    )


def measure_store(engine: Any, args: argparse.Namespace) -> None:
    bench = Bench(engine, args.requests)
    results: list[Result] = []
    print(
        f"\nRequests (n: {args.requests} each after 5 warm-up, fewer where {REQUEST_BUDGET_S:.0f} s ran out; "
        f"ms wall clock; target p95 <= {PAGE_TARGET_MS:.0f} ms)"
    )
    print(
        f"  {'scenario':<44} {'status':>6} {'n':>4} {'rows':>5} {'p50':>7} {'p95':>7} {'result':>6} "
        f"{'CPU p50':>7} {'CPU p95':>7} {'SQL/req':>7} {'SQL ms':>7} {'render':>7}"
    )
    for scenario in scenarios():
        result = bench.measure(scenario)
        results.append(result)
        verdict = "PASS" if result.ok else "MISS"
        print(
            f"  {scenario.label:<44} {result.status:>6} {len(result.times):>4} {result.rows:>5} "
            f"{result.p50:>7.1f} {result.p95:>7.1f} "
            f"{verdict:>6} {pct(result.cpu, 50):>7.1f} {pct(result.cpu, 95):>7.1f} {result.statements:>7.1f} "
            f"{result.sql_ms:>7.1f} {result.render_ms:>7.1f}",
            flush=True,
        )
    print(
        "  (CPU: this process's CPU time per request (SQLite's work included, PostgreSQL's not): less\n"
        "   disturbed by other load than wall clock.  SQL ms: mean execute() time per request.\n"
        "   render: mean template time.  rows: rows the response showed (a page shows at most "
        f"{page_size()},\n   the API 50 by default))"
    )
    state_readers = sorted(
        {r.scenario.label.strip() for r in results for c in r.captured if STATE_COLUMN.search(c[0])}
    )
    print(
        "  process_instance.state read by: " + ", ".join(state_readers)
        if state_readers
        else "  No request read process_instance.state (the captured SQL of every scenario checked)."
    )

    # ---- the queue query alone
    print(
        f"\nQueue query alone: the request's statements that read the task table, replayed together in one "
        f"read transaction\n({args.requests} times; ms; target p95 <= {QUERY_TARGET_MS:.0f} ms)"
    )
    print(f"  {'scenario':<44} {'stmts':>5} {'n':>4} {'p50':>7} {'p95':>7} {'result':>6}  slowest of them")
    query_results = []
    for result in results:
        statements = [c for c in result.captured if reads_task_table(c[0])]
        times = bench.replay(statements, args.requests)
        p50, p95 = pct(times, 50), pct(times, 95)
        ok = p95 <= QUERY_TARGET_MS
        slowest = max(statements, key=lambda c: c[2]) if statements else ("", None, 0.0)
        query_results.append((result.scenario, p95, ok, statements))
        print(
            f"  {result.scenario.label:<44} {len(statements):>5} {len(times):>4} {p50:>7.1f} {p95:>7.1f} "
            f"{'PASS' if ok else 'MISS':>6}  {short_sql(slowest[0], 70)}",
            flush=True,
        )
    reference = [
        ("Engine.tasks(team='assessment')", lambda: engine.tasks(team="assessment")),
        ("Engine.tasks(team='mash', due='overdue')", lambda: engine.tasks(team="mash", due="overdue")),
        (f"Engine.tasks(user='{ME}')", lambda: engine.tasks(user=ME)),
    ]
    iterations = max(20, args.requests // 4)
    print(
        f"  for reference, the engine's queue read (the CLI's; not used by the pages; limit 500; "
        f"{iterations} times):"
    )
    for name, function in reference:
        function()
        times = bench.timed(function, iterations)
        print(
            f"  {name:<44} {'':>5} {pct(times, 50):>7.1f} {pct(times, 95):>7.1f} "
            f"{'PASS' if pct(times, 95) <= QUERY_TARGET_MS else 'MISS':>6}"
        )

    print_plans(engine, query_results, args)
    if not args.no_whatif:
        what_if(bench, args)

    # ---- why the misses
    misses = [r for r in results if not r.ok]
    query_misses = {s.label for s, _p, ok, _st in query_results if not ok}
    to_explain: list[Result] = []
    groups: set[str] = set()
    for r in results:  # the first missed scenario of each kind of page or call
        group = " ".join(r.scenario.label.split()[:2]) if not r.scenario.label.startswith(" ") else ""
        if (not r.ok or r.scenario.label in query_misses) and group and group not in groups:
            groups.add(group)
            to_explain.append(r)
    if to_explain and args.max_profiles:
        print("\nWhere the time goes: the first missed scenario of each kind, profiled")
    for result in to_explain[: args.max_profiles]:
        print(
            f"\n  [{result.scenario.label.strip()}] GET {result.scenario.path} as {result.scenario.user}: "
            f"p95 {result.p95:.1f} ms, {result.statements:.0f} statements, SQL {result.sql_ms:.1f} ms, "
            f"render {result.render_ms:.1f} ms"
        )
        by_time = sorted(result.captured, key=lambda c: -c[2])
        print("    slowest statements of one request (execute ms):")
        for statement, _params, took in by_time[:5]:
            print(f"      {took * 1000:7.2f}  {short_sql(statement, 130)}")
        shapes: dict[str, int] = defaultdict(int)
        for statement, _params, _took in result.captured:
            shapes[re.sub(r"\s+", " ", statement)[:90]] += 1
        repeated = {k: v for k, v in shapes.items() if v > 1}
        if repeated:
            print("    statements run more than once in one request:")
            for k, v in sorted(repeated.items(), key=lambda kv: -kv[1]):
                print(f"      x{v}: {k}")
        print(bench.profile(result.scenario))

    RESULTS.append(
        {
            "label": engine.db.dialect,
            "results": results,
            "queries": query_results,
            "misses": misses,
            "query_misses": query_misses,
        }
    )


def print_plans(engine: Any, query_results: list[Any], args: argparse.Namespace) -> None:
    postgres = engine.db.dialect == "postgresql"
    kind = "EXPLAIN (ANALYZE, BUFFERS)" if postgres else "EXPLAIN QUERY PLAN"
    print(f"\nPlans ({kind}) of the task-table statements, each distinct statement once")
    seen: dict[str, str] = {}
    for scenario, _p95, _ok, statements in query_results:
        for statement, parameters, took in statements:
            key = re.sub(r"\s+", " ", statement)
            where = scenario.label.strip()
            if key in seen:
                continue
            seen[key] = where
            try:
                lines = explain(engine, statement, parameters)
            except Exception as exc:  # a plan must never stop the figures
                print(f"  [{where}] EXPLAIN failed: {type(exc).__name__}: {exc}")
                continue
            summary, shown = plan_summary(lines, postgres)
            print(f"  [{where}] {summary} ({took * 1000:.1f} ms in the captured request)")
            print(f"      SQL: {short_sql(statement, 200)}")
            limit = 10 if args.plans == "short" else 80
            for line in shown[:limit]:
                print(f"      | {line if len(line) <= 170 else line[:169] + '…'}")
            if len(shown) > limit:
                print(f"      | … {len(shown) - limit} more lines")
    if not postgres:
        print(
            "  (SQLite: 'TEMP B-TREE FOR ORDER BY' under 'status IN (?, ?)' is a bounded sorter fed by one\n"
            "   ordered index range per status, which stops each range once it holds LIMIT rows: cheap\n"
            "   unless a filter outside the index rejects most rows.  The figures beside each plan count.)"
        )


# ------------------------------------------------------------------------------------ what if


def what_if(bench: Bench, args: argparse.Namespace) -> None:
    """Other query shapes and indexes, timed on this store (the bench's database only).

    The product is not changed: indexes made here are dropped again at the end.
    """
    from engine.models import CaseRecord, ProcessInstance, Task

    engine = bench.engine
    postgres = engine.db.dialect == "postgresql"
    n = max(30, args.requests // 2)
    open_ = ["ready", "claimed"]
    literal_open = sa.bindparam("open_statuses", open_, expanding=True, literal_execute=True)
    print(f"\nWhat if (other shapes and indexes, timed on this store; up to {n} times each; ms)")
    print(f"  {'':<66} {'rows':>5} {'p50':>7} {'p95':>7}  plan")

    def run(label: str, work: Callable[[Any], Any]) -> None:
        with engine.db.read() as session:
            connection = session.connection()
            bench.meter.capture = []
            rows = work(connection)
            captured, bench.meter.capture = bench.meter.capture, None
        times = []
        for _ in budget(n, WHAT_IF_BUDGET_S, minimum=10):
            t0 = time.perf_counter()
            with engine.db.read() as session:
                work(session.connection())
            times.append((time.perf_counter() - t0) * 1000)
        plan = ""
        if captured:
            statement, parameters, _ = max(captured, key=lambda c: c[2])
            try:
                plan = compact_plan(explain_plain(engine, statement, parameters), postgres)
            except Exception as exc:  # a plan must never stop the figures
                plan = f"EXPLAIN failed: {type(exc).__name__}"
        count = rows if isinstance(rows, int) else len(rows)
        print(f"  {label:<66} {count:>5} {pct(times, 50):>7.1f} {pct(times, 95):>7.1f}  {plan}", flush=True)

    def ids(statement: Any) -> Callable[[Any], Any]:
        return lambda connection: connection.execute(statement).all()

    def by_status(
        conditions: list[Any],
        limit: int,
        statuses: list[str] = open_,
        tiebreak: bool = False,
        join_case: bool = False,
    ) -> Any:
        """One ordered, LIMITed branch per status (each an index range), merged: UNION ALL."""
        order = (Task.due_at, Task.id) if tiebreak else (Task.due_at,)
        parts = []
        for status in statuses:
            branch = sa.select(Task.id, Task.due_at)
            if join_case:
                branch = branch.select_from(Task).outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
            parts.append(
                branch.where(*conditions, Task.status == status, Task.due_at.is_not(None))
                .order_by(*order)
                .limit(limit)
                .subquery()
            )
        merged = sa.union_all(*(sa.select(p.c.id, p.c.due_at) for p in parts)).subquery()
        order_merged = (merged.c.due_at, merged.c.id) if tiebreak else (merged.c.due_at,)
        return sa.select(merged.c.id, merged.c.due_at).order_by(*order_merged).limit(limit)

    # The practitioner's visibility, as web.queues writes it today (assessment, ME).
    roles_here = ["section47_lead", "social_worker"]
    visible = sa.or_(
        Task.assignee == ME,
        sa.and_(Task.assignee.is_(None), Task.role_key.in_(roles_here)),
        sa.exists().where(
            CaseRecord.id == Task.case_id,
            sa.or_(CaseRecord.worker == ME, CaseRecord.team_key.in_(["assessment"])),
        ),
    )
    visible_joined = sa.or_(  # the same rule on a LEFT JOIN of the case (a task has at most one)
        Task.assignee == ME,
        sa.and_(Task.assignee.is_(None), Task.role_key.in_(roles_here)),
        CaseRecord.worker == ME,
        CaseRecord.team_key.in_(["assessment"]),
    )
    mash = [Task.team_key == "mash"]
    assessment = [Task.team_key == "assessment", visible]
    assessment_joined = [Task.team_key == "assessment", visible_joined]
    today_page = sa.select(Task.id).where(*mash, Task.status.in_(open_), Task.due_at.is_not(None))
    print("  1. The page's first read (ids of the first 200 by due date):")
    run(
        "mash, manager: earlier shape (status IN (?, ?) ORDER BY due_at)",
        ids(today_page.order_by(Task.due_at).limit(200)),
    )
    run("mash, manager: UNION ALL of one ordered branch per status", ids(by_status(mash, 200)))
    today_practitioner = sa.select(Task.id).where(
        *assessment, Task.status.in_(open_), Task.due_at.is_not(None)
    )
    run("assessment, practitioner: earlier shape", ids(today_practitioner.order_by(Task.due_at).limit(200)))
    run("assessment, practitioner: UNION ALL per status", ids(by_status(assessment, 200)))
    run(
        "assessment, practitioner: UNION ALL, case LEFT JOINed (no EXISTS)",
        ids(by_status(assessment_joined, 200, join_case=True)),
    )

    print("  2. The page's count:")
    counted = sa.select(Task.id).where(*mash, Task.status.in_(open_))
    run(
        "mash, manager: exact count (today, for managers)",
        lambda c: c.execute(sa.select(sa.func.count()).select_from(counted.subquery())).scalar_one(),
    )
    run(
        "mash, manager: counted up to 1,001 (as for everyone else)",
        lambda c: c.execute(
            sa.select(sa.func.count()).select_from(counted.limit(1001).subquery())
        ).scalar_one(),
    )

    print("  3. The police partner's queue (mash: unclaimed police tasks, and their own):")
    partner = [
        sa.or_(
            Task.assignee == "pat.police", sa.and_(Task.assignee.is_(None), Task.role_key == "police_partner")
        )
    ]
    run(
        "earlier shape: OR filter on the team index, ORDER BY due_at",
        ids(
            sa.select(Task.id)
            .where(*mash, *partner, Task.status.in_(open_), Task.due_at.is_not(None))
            .order_by(Task.due_at)
            .limit(200)
        ),
    )
    offered_branch = [*mash, Task.assignee.is_(None), Task.role_key == "police_partner"]
    own_branch = [Task.assignee == "pat.police"]  # the assignee index; the team is kept in Python

    def partner_union(connection: Any, literal: bool = False) -> Any:
        if literal:  # SQLite uses a partial index only when the query names its WHERE's values
            offered = (
                sa.select(Task.id, Task.due_at)
                .where(*offered_branch, Task.status == sa.literal_column("'ready'"), Task.due_at.is_not(None))
                .order_by(Task.due_at)
                .limit(200)
            )
        else:
            offered = by_status(offered_branch, 200, ["ready"])
        a = connection.execute(offered).all()
        own = sa.select(Task.id, Task.due_at, Task.team_key).where(
            *own_branch, Task.status.in_(open_), Task.due_at.is_not(None)
        )
        b = [
            r for r in connection.execute(own.order_by(Task.due_at).limit(200)).all() if r.team_key == "mash"
        ]
        return sorted(a + b, key=lambda r: r.due_at)[:200]

    run("two reads: offered (team+role, unclaimed) and own (assignee index)", partner_union)
    run(
        "counted up to 1,001 (today's count)",
        lambda c: c.execute(
            sa.select(sa.func.count()).select_from(
                sa.select(Task.id).where(*mash, *partner, Task.status.in_(open_)).limit(1001).subquery()
            )
        ).scalar_one(),
    )

    print("  4. The API's list (?team=mash as the manager, 51 rows, with the instance revision):")
    api_rows = (
        sa.select(Task, CaseRecord, ProcessInstance.revision)
        .join(ProcessInstance, ProcessInstance.id == Task.instance_id)
        .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
    )
    run(
        "earlier shape: ORDER BY due_at IS NULL, due_at, created_at, id",
        lambda c: c.execute(
            api_rows.where(*mash, Task.status.in_(open_))
            .order_by(Task.due_at.is_(None), Task.due_at, Task.created_at, Task.id)
            .limit(51)
        ).all(),
    )

    def api_two_reads(connection: Any) -> Any:
        page = [r.id for r in connection.execute(by_status(mash, 51, tiebreak=True)).all()]
        return connection.execute(api_rows.where(Task.id.in_(page))).all()

    run("ids by UNION ALL per status ORDER BY due_at, id; then rows by id", api_two_reads)

    print(f"  5. The child filter (?child={CHILD_FILTER}, mash):")
    needle = CHILD_FILTER
    today_match = sa.select(CaseRecord.id).where(
        sa.or_(
            sa.func.lower(CaseRecord.reference).contains(needle, autoescape=True),
            sa.func.lower(CaseRecord.subject_name).contains(needle, autoescape=True),
        )
    )
    run(
        "earlier: ids with case_id IN (lower(..) LIKE subquery), ORDER BY due_at",
        ids(
            sa.select(Task.id)
            .where(*mash, Task.status.in_(open_), Task.case_id.in_(today_match), Task.due_at.is_not(None))
            .order_by(Task.due_at)
            .limit(200)
        ),
    )
    run(
        "earlier: its count up to 1,001",
        lambda c: c.execute(
            sa.select(sa.func.count()).select_from(
                sa.select(Task.id)
                .where(*mash, Task.status.in_(open_), Task.case_id.in_(today_match))
                .limit(1001)
                .subquery()
            )
        ).scalar_one(),
    )
    if postgres:
        match_condition = sa.or_(
            sa.func.lower(CaseRecord.reference).contains(needle, autoescape=True),
            sa.func.lower(CaseRecord.subject_name).contains(needle, autoescape=True),
        )
        match_label = "lower() LIKE"
    else:  # SQLite's LIKE ignores ASCII case already, and its lower() only folds ASCII: the same answer
        match_condition = sa.or_(
            CaseRecord.reference.contains(needle, autoescape=True),
            CaseRecord.subject_name.contains(needle, autoescape=True),
        )
        match_label = "plain LIKE, no lower()"
    match = sa.select(CaseRecord.id).where(match_condition)

    def child_one_read(connection: Any) -> Any:
        """The open tasks of the matching cases, all of them (the total is len(rows), the page the
        first 200): case_id IN (the match), no team condition in the SQL, so that the planner walks
        ix_task_case from the few matching cases rather than the team index; the team kept in Python."""
        rows = connection.execute(
            sa.select(Task.id, Task.due_at, Task.team_key).where(
                Task.case_id.in_(match), Task.status.in_(open_)
            )
        ).all()
        rows = [r for r in rows if r.team_key == "mash"]
        return sorted(rows, key=lambda r: (r.due_at is None, r.due_at))[:200]

    run(f"one read: case_id IN (match, {match_label}), no team in SQL; page+total", child_one_read)
    run(
        f"  the case-id read alone ({match_label}, full scan of case_record)",
        lambda c: c.execute(match).all(),
    )

    existing = {ix["name"] for ix in sa.inspect(engine.db.engine).get_indexes("task")}
    in_schema = "ix_task_team_due_open" in existing
    print(
        "  6. With partial indexes on the open tasks "
        + ("(in the schema: migration 0002):" if in_schema else "(made here, dropped after):")
    )
    made: list[str] = []
    statements = (
        []
        if in_schema
        else [
            ("bench_ix_task_team_due_open", "task (team_key, due_at) WHERE status IN ('ready', 'claimed')"),
            (
                "bench_ix_task_assignee_due_open",
                "task (assignee, due_at) WHERE status IN ('ready', 'claimed')",
            ),
            (
                "bench_ix_task_offered",
                "task (team_key, role_key, due_at) WHERE status = 'ready' AND assignee IS NULL",
            ),
        ]
    )
    try:
        with engine.db.engine.begin() as connection:
            for name, definition in statements:
                connection.exec_driver_sql(f"CREATE INDEX {name} ON {definition}")
                made.append(name)
            if postgres:
                connection.exec_driver_sql("ANALYZE task")
        for name, definition in statements:
            print(f"     CREATE INDEX {name} ON {definition}")
        run(
            "mash, manager: earlier shape, statuses as bound parameters",
            ids(today_page.order_by(Task.due_at).limit(200)),
        )
        literal_page = sa.select(Task.id).where(
            *mash, Task.status.in_(literal_open), Task.due_at.is_not(None)
        )
        run(
            "mash, manager: statuses rendered as literals (literal_execute)",
            ids(literal_page.order_by(Task.due_at).limit(200)),
        )
        literal_practitioner = sa.select(Task.id).where(
            *assessment, Task.status.in_(literal_open), Task.due_at.is_not(None)
        )
        run("assessment, practitioner: literals", ids(literal_practitioner.order_by(Task.due_at).limit(200)))
        literal_joined = (
            sa.select(Task.id)
            .select_from(Task)
            .outerjoin(CaseRecord, CaseRecord.id == Task.case_id)
            .where(*assessment_joined, Task.status.in_(literal_open), Task.due_at.is_not(None))
        )
        run(
            "assessment, practitioner: literals, case LEFT JOINed",
            ids(literal_joined.order_by(Task.due_at).limit(200)),
        )
        run(
            "police partner: two reads (offered index, 'ready' literal; own)",
            lambda c: partner_union(c, True),
        )
        run(
            "API mash: literals, dated, ORDER BY due_at, id LIMIT 51 (one read)",
            lambda c: c.execute(
                api_rows.where(*mash, Task.status.in_(literal_open), Task.due_at.is_not(None))
                .order_by(Task.due_at, Task.id)
                .limit(51)
            ).all(),
        )
    except Exception as exc:  # an index the store refuses: say so, keep going
        print(f"     skipped: {type(exc).__name__}: {exc}")
    finally:
        with engine.db.engine.begin() as connection:
            for name in made:
                connection.exec_driver_sql(f"DROP INDEX {name}")

    if postgres:
        trigram = {ix["name"] for ix in sa.inspect(engine.db.engine).get_indexes("case_record")}
        in_schema = "ix_case_record_subject_name_trgm" in trigram
        print(
            "  7. The child filter with trigram indexes (pg_trgm; "
            + ("in the schema: migration 0002):" if in_schema else "made here, dropped after):")
        )
        made = []
        try:
            with engine.db.engine.begin() as connection:
                if not in_schema:
                    connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                for column in () if in_schema else ("subject_name", "reference"):
                    connection.exec_driver_sql(
                        f"CREATE INDEX bench_trgm_{column} ON case_record "
                        f"USING gin (lower({column}) gin_trgm_ops)"
                    )
                    made.append(f"bench_trgm_{column}")
                connection.exec_driver_sql("ANALYZE case_record")
            run(
                "earlier shape (one statement with the subquery)",
                ids(
                    sa.select(Task.id)
                    .where(
                        *mash, Task.status.in_(open_), Task.case_id.in_(today_match), Task.due_at.is_not(None)
                    )
                    .order_by(Task.due_at)
                    .limit(200)
                ),
            )
            run("one read: case_id IN (match, trigram index), no team in SQL; page+total", child_one_read)
        except Exception as exc:  # no pg_trgm here: say so
            print(f"     skipped: {type(exc).__name__}: {exc}")
        finally:
            with engine.db.engine.begin() as connection:
                for name in made:
                    connection.exec_driver_sql(f"DROP INDEX {name}")


def explain_plain(engine: Any, statement: str, parameters: Any) -> list[str]:
    if engine.db.dialect != "postgresql":
        return explain(engine, statement, parameters)
    with engine.db.read() as session:
        rows = (
            session.connection()
            .exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement, parameters)
            .fetchall()
        )
    return [r[0] for r in rows]


def compact_plan(lines: list[str], postgres: bool) -> str:
    """One line: the plan's nodes (PostgreSQL) or steps (SQLite)."""
    if postgres:
        nodes = []
        for line in lines:
            text = line.strip().removeprefix("->").strip()
            if not text or ":" in text.split("(")[0]:
                continue  # a detail line (Filter:, Index Cond:, Sort Key: ...)
            text = re.sub(r"\s*\(actual.*$", "", text)
            text = re.sub(r" on task( \w+)?", "", text).replace("Index Scan using ", "IndexScan ")
            text = text.replace("Index Only Scan using ", "IndexOnly ").replace(
                "Bitmap Index Scan on ", "BitmapIdx "
            )
            nodes.append(text)
        out = " > ".join(nodes)
    else:
        out = "; ".join(line.strip() for line in lines)
        out = out.replace("SEARCH ", "").replace("USING ", "").replace("INDEX ", "")
    return out if len(out) <= 150 else out[:149] + "…"


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 cases / 30,000 tasks, 60 requests each")
    parser.add_argument("--requests", type=int, default=None, help="requests per scenario (200; quick 60)")
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--sqlite-analyze", action="store_true", help="run ANALYZE on SQLite after seeding")
    parser.add_argument("--plans", choices=("short", "full"), default="short")
    parser.add_argument("--max-profiles", type=int, default=3, help="missed kinds profiled per store")
    parser.add_argument("--no-whatif", action="store_true", help="skip the other shapes and indexes")
    parser.add_argument("--keep", action="store_true", help="keep the seeded stores (prints their URLs)")
    parser.add_argument("--url", help="measure a store seeded earlier with --keep (no seeding, not dropped)")
    args = parser.parse_args(argv)
    n_cases = args.cases or (10_000 if args.quick else 100_000)
    n_tasks = args.tasks or (30_000 if args.quick else 300_000)
    args.requests = args.requests or (60 if args.quick else 200)

    started = time.perf_counter()
    print(
        f"bench/web_queues.py: {n_cases:,} cases, {n_tasks:,} tasks, {args.requests} requests per scenario; "
        f"load average {load_average()}; Python {sys.version.split()[0]}"
    )
    summaries = []
    tmp = Path(tempfile.mkdtemp(prefix="frontdoor_bench_web_"))
    try:
        if args.url:
            summaries.append(run_store(args.url, f"Store {args.url}", args, n_cases, n_tasks))
        elif args.store in ("sqlite", "both"):
            with sqlite_store(tmp) as (url, label):
                summaries.append(run_store(url, label, args, n_cases, n_tasks))
        if not args.url and args.store in ("postgres", "both"):
            try:
                store = postgres_store(args.keep)
                url, label = store.__enter__()
            except Exception as exc:  # no server: say so, measure the rest
                print(
                    f"\nPostgreSQL not measured: not reachable at {POSTGRES_SERVER}: "
                    f"{type(exc).__name__}: {exc}"
                )
            else:
                try:
                    summaries.append(run_store(url, label, args, n_cases, n_tasks))
                finally:
                    store.__exit__(None, None, None)
    finally:
        if args.keep:
            print(f"\nKept: {tmp} (re-measure with --url sqlite:///{tmp}/web_queues.db)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n{'=' * 110}\nSummary (p95 ms; page target {PAGE_TARGET_MS:.0f}, "
        f"query target {QUERY_TARGET_MS:.0f})"
    )
    labels = [f"{s.user:<11} {s.path}" for s in scenarios()]
    stores = [s["label"].split()[0] for s in summaries]
    print("  (page: wall-clock p95 and verdict, this process's CPU p95 in brackets; query: the replay's p95)")
    print(f"  {'':<50} " + " ".join(f"{name + ' page (CPU)':>25} {name + ' query':>17}" for name in stores))
    missed = {True: 0, False: 0}  # of the figure, and beside it
    for i, (scenario, name) in enumerate(zip(scenarios(), labels, strict=True)):
        cells = []
        for summary in summaries:
            r = summary["results"][i]
            q = summary["queries"][i]
            missed[scenario.figure] += (not r.ok) + (not q[2])
            cells.append(
                f"{r.p95:>10.1f} {'PASS' if r.ok else 'MISS':>5} ({pct(r.cpu, 95):>6.1f}) "
                f"{q[1]:>11.1f} {'PASS' if q[2] else 'MISS':>5}"
            )
        print(f"  {'' if scenario.figure else '+'}{name:<49} " + " ".join(cells))
    print(
        "  (+: beside the issue's figure, which names the team queue and my-tasks pages and their API\n"
        "   calls: the filters and a later page, whose misses are counted apart)"
    )
    print(
        f"\nThe issue's figure: {missed[True]} target(s) missed; beside it: {missed[False]} missed; "
        f"load average {load_average()}; total {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
