"""Timer worker benchmarks on PostgreSQL.

Run: ``.venv/bin/python bench/timers.py [--quick]``.  Prints figures; always exits 0 (a missed target
is printed, never turned into an exit status).  Not a test.  Each part uses a database of its own,
created on the server at ``FRONTDOOR_BENCH_POSTGRES_URL`` (default 127.0.0.1:5432, user postgres)
and dropped afterwards.  Process shape: ``tests/fixtures/bpmn/timer_at.bpmn``, a start event, one
intermediate timer at the instant ``due_at`` in the process data, an end event.

1. Burst: 10,000 timers (``--quick`` 1,000) due in the same second, drained by 3 worker processes
   (each calls ``TimerWorker.drain``, the loop ``frontdoor worker --once`` runs).  Setup is not part of
   the figure: 1,000 instances are started through ``Engine.start`` on a fake clock an hour before the
   due second, by 2 processes in parallel (its time is printed, with what 10,000 would take), and the
   rest are copies of one of them made with SQL: the same state and an identical timer row, since
   every instance has the same data.  The workers import and connect first and wait at a
   barrier; the figure is the time from the barrier to the last worker's exit.  Then the same again on
   a copy of the database, with one worker SIGKILLed when half the timers have fired; a fresh worker
   runs afterwards if anything is left.  Both runs count every timer: rows fired, one ``timer.fired``
   audit event per timer id, no duplicates, and the audit chain verifies.
2. Lateness: 200 timers spread evenly over 60 s (``--quick`` 30 s), one ``frontdoor worker`` process
   running its real APScheduler loop.  Lateness is ``fired_at - due_at`` from the timer table
   (``fired_at`` is when the worker began the firing transaction).  Target: p99 <= 1 s.
3. Idle: 50,000 waiting timers none of which is due for a day (rows inserted with SQL, copies of the
   timer rows of a few real instances), one ``frontdoor worker`` process left alone for 60 s
   (``--quick`` 30 s) after a warm-up.  CPU is utime + stime from /proc/<pid>/stat.  Target: under
   1 CPU second per minute.  The database backends serving it are shown beside it, for information.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: make `engine` importable
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

BPMN_FILE = ROOT / "tests" / "fixtures" / "bpmn" / "timer_at.bpmn"
PROCESS_KEY = "timer_at"
FRONTDOOR = ROOT / ".venv" / "bin" / "frontdoor"
POSTGRES_SERVER = os.environ.get(
    "FRONTDOOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
SETUP_PROCESSES = 2
STARTED_THROUGH_ENGINE = 1_000  # the rest of the burst is copied with SQL
WORKERS = 3
LATENESS_TIMERS = 200
LATENESS_TARGET = 1.0  # seconds, p99
IDLE_TIMERS = 50_000
IDLE_TARGET = 1.0  # CPU seconds per minute
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- databases ---------------------------------------------------------------------------------------


def admin_engine() -> sa.Engine:
    return sa.create_engine(
        f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )


def create_database(template: str | None = None) -> str:
    name = f"frontdoor_bench_timers_{uuid.uuid4().hex[:10]}"
    admin = admin_engine()
    with admin.connect() as connection:
        clause = f' TEMPLATE "{template}"' if template else ""
        connection.execute(sa.text(f'CREATE DATABASE "{name}"{clause}'))
    admin.dispose()
    return name


def drop_database(name: str) -> None:
    admin = admin_engine()
    with admin.connect() as connection:
        connection.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
        )
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def url_of(name: str) -> str:
    return f"{POSTGRES_SERVER}/{name}"


def prepare(name: str) -> None:
    """Schema and the one process, deployed."""
    from engine.core import Engine
    from engine.db import Database

    engine = Engine(Database(url_of(name)))
    engine.db.upgrade()
    engine.deploy([(BPMN_FILE.name, BPMN_FILE.read_bytes())], "bench")
    engine.db.dispose()


def start_instances(args: tuple[str, list[str], str]) -> int:
    """In a setup process: start one instance per due instant, on a fake clock at ``now``."""
    url, dues, now = args
    from engine import clock
    from engine.clock import FakeClock
    from engine.core import Engine
    from engine.db import Database

    clock.set_clock(FakeClock(datetime.fromisoformat(now)))
    engine = Engine(Database(url))
    for due in dues:
        engine.start(PROCESS_KEY, "bench", data={"due_at": due})
    engine.db.dispose()
    return len(dues)


def start_in_parallel(url: str, dues: list[str], now: datetime, processes: int) -> None:
    chunks = [dues[i::processes] for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(start_instances, [(url, chunk, now.isoformat()) for chunk in chunks])


def copy_instances(url: str, copies: int) -> None:
    """``copies`` more instances like the first one, each with a copy of its timer row.

    Columns are read from the database, so the copy follows the schema wherever it goes.
    """
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        meta = sa.MetaData()
        meta.reflect(connection, only=["process_instance", "timer"])
        instance_columns = [c.name for c in meta.tables["process_instance"].columns if c.name != "id"]
        timer_columns = [c.name for c in meta.tables["timer"].columns if c.name not in ("id", "instance_id")]
        source = connection.execute(sa.text("SELECT min(id) FROM process_instance")).scalar_one()
        columns = ", ".join(instance_columns)
        from_source = ", ".join(f"p.{c}" for c in instance_columns)
        timer_list = ", ".join(timer_columns)
        timer_from = ", ".join(f"t.{c}" for c in timer_columns)
        connection.execute(
            sa.text(
                f"WITH made AS (INSERT INTO process_instance ({columns}) "
                f"SELECT {from_source} FROM process_instance p, generate_series(1, :copies) "
                f"WHERE p.id = :source RETURNING id) "
                f"INSERT INTO timer (instance_id, {timer_list}) "
                f"SELECT made.id, {timer_from} FROM made CROSS JOIN timer t WHERE t.instance_id = :source"
            ),
            {"copies": copies, "source": source},
        )
        connection.execute(sa.text("ANALYZE"))
    engine.dispose()


def timer_counts(url: str) -> dict[str, Any]:
    """Every timer accounted for: statuses, timer.fired events, duplicates, and the audit chain."""
    from engine import audit
    from engine.db import Database

    db = Database(url)
    with db.read() as session:
        statuses = dict(session.execute(sa.text("SELECT status, count(*) FROM timer GROUP BY status")).all())
        events, distinct = session.execute(
            sa.text(
                "SELECT count(*), count(DISTINCT data->>'timer') FROM audit_event "
                "WHERE action = 'timer.fired'"
            )
        ).one()
        duplicated = session.scalar(
            sa.text(
                "SELECT count(*) FROM (SELECT data->>'timer' FROM audit_event WHERE action = 'timer.fired' "
                "GROUP BY 1 HAVING count(*) > 1) AS twice"
            )
        )
        unfired_with_event = session.scalar(
            sa.text(
                "SELECT count(*) FROM timer WHERE status <> 'fired' AND id::text IN "
                "(SELECT data->>'timer' FROM audit_event WHERE action = 'timer.fired')"
            )
        )
        broken = audit.verify(session)
    db.dispose()
    return {
        "statuses": statuses,
        "events": events,
        "distinct": distinct,
        "duplicated": duplicated,
        "unfired_with_event": unfired_with_event,
        "chain": "intact" if broken is None else f"BROKEN at {broken.seq}: {broken.reason}",
    }


def fired_count(url_engine: sa.Engine) -> int:
    with url_engine.connect() as connection:
        return int(
            connection.execute(sa.text("SELECT count(*) FROM timer WHERE status = 'fired'")).scalar_one()
        )


# -- worker processes ----------------------------------------------------------------------------------

BARRIER_WORKER = """
import json, sys, time
from pathlib import Path
from engine.core import Engine
from engine.db import Database
from engine.worker import TimerWorker

url, ready, go, name = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
engine = Engine(Database(url))
engine.next_timer_due()  # connect before the barrier
ready.write_text("ready")
while not go.exists():
    time.sleep(0.01)
started = time.perf_counter()
fired = TimerWorker(engine, name=name).drain()
print(json.dumps({"fired": fired, "seconds": time.perf_counter() - started}), flush=True)
"""


def spawn_barrier_worker(url: str, workdir: Path, index: int, go: Path) -> tuple[subprocess.Popen[str], Path]:
    ready = workdir / f"ready{index}"
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(BARRIER_WORKER), url, str(ready), str(go), f"bench-{index}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, ready


def run_burst(url: str, workdir: Path, total: int, kill_half_way: bool) -> dict[str, Any]:
    go = workdir / "go"
    go.unlink(missing_ok=True)
    workers = [spawn_barrier_worker(url, workdir, i, go) for i in range(WORKERS)]
    deadline = time.monotonic() + 120
    while not all(ready.exists() for _, ready in workers):
        if time.monotonic() > deadline or any(p.poll() is not None for p, _ in workers):
            for process, _ in workers:
                process.kill()
            errors = [process.communicate()[1][-2000:] for process, _ in workers]
            raise RuntimeError("a worker did not start:\n" + "\n".join(errors))
        time.sleep(0.05)
    watcher = sa.create_engine(url)
    killed_at = None
    started = time.perf_counter()
    go.write_text("go")
    if kill_half_way:
        victim = workers[0][0]
        while victim.poll() is None:
            done = fired_count(watcher)
            if done >= total // 2:
                os.kill(victim.pid, signal.SIGKILL)
                killed_at = done
                break
            time.sleep(0.05)
    outputs = []
    for process, _ in workers:
        out, err = process.communicate(timeout=1800)
        outputs.append((process.returncode, out.strip(), err.strip()))
    elapsed = time.perf_counter() - started
    watcher.dispose()
    per_worker = []
    for code, out, err in outputs:
        if code == 0 and out:
            per_worker.append(str(json.loads(out.splitlines()[-1])["fired"]))
        elif code == -signal.SIGKILL:
            per_worker.append("SIGKILLed")
        else:
            per_worker.append(f"exit {code}: {err.splitlines()[-1] if err else '?'}")
    # Anything the killed worker held is waiting again; a fresh worker fires what is left.
    leftover = 0
    if kill_half_way:
        fresh = subprocess.run(
            [str(FRONTDOOR), "--database-url", url, "worker", "--once"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        leftover = int(fresh.stdout.split("fired ")[-1].split()[0]) if "fired " in fresh.stdout else -1
    return {"elapsed": elapsed, "per_worker": per_worker, "killed_at": killed_at, "leftover": leftover}


def report_counts(total: int, counts: dict[str, Any]) -> None:
    fired = counts["statuses"].get("fired", 0)
    once = (
        fired == total
        and counts["events"] == total
        and counts["distinct"] == total
        and counts["duplicated"] == 0
        and counts["unfired_with_event"] == 0
    )
    print(
        f"    fired: {fired}/{total} timers; timer.fired events {counts['events']} for {counts['distinct']} "
        f"distinct timers; fired twice: {counts['duplicated']}; rows {counts['statuses']}; "
        f"audit chain {counts['chain']}"
    )
    print(f"    => every timer fired exactly once: {'YES' if once else 'NO'}")


def part_burst(total: int) -> None:
    print(f"\n1. Burst: {total:,} timers due in the same second, {WORKERS} worker processes")
    template = create_database()
    copies: list[str] = []
    try:
        prepare(template)
        due = datetime.now(UTC).replace(microsecond=0)
        started = min(total, STARTED_THROUGH_ENGINE)
        t0 = time.perf_counter()
        start_in_parallel(
            url_of(template), [due.isoformat()] * started, due - timedelta(hours=1), SETUP_PROCESSES
        )
        setup = time.perf_counter() - t0
        print(
            f"    setup (not measured): {started:,} instances through Engine.start in {setup:.1f} s "
            f"({SETUP_PROCESSES} processes, {1000 * setup / started:.1f} ms per start; {total:,} would take "
            f"about {setup * total / started:.0f} s)"
        )
        if total > started:
            t0 = time.perf_counter()
            copy_instances(url_of(template), total - started)
            print(
                f"    and {total - started:,} more copied from one of them with SQL (instance row and timer "
                f"row; the same state, as they have the same data) in {time.perf_counter() - t0:.1f} s"
            )
        print(f"    all {total:,} due at {due.isoformat()}")
        for kill in (False, True):
            name = create_database(template=template)
            copies.append(name)
            with tempfile.TemporaryDirectory() as work:
                result = run_burst(url_of(name), Path(work), total, kill)
            label = "one worker SIGKILLed half-way" if kill else "all workers to the end"
            rate = total / result["elapsed"]
            print(f"  {label}:")
            print(
                f"    time to drain: {result['elapsed']:.1f} s ({rate:,.0f} timers/s); fired per worker: "
                f"{', '.join(result['per_worker'])}"
            )
            if kill:
                print(
                    f"    killed when {result['killed_at']:,} had fired; a fresh worker afterwards fired "
                    f"{result['leftover']} left over"
                )
            report_counts(total, timer_counts(url_of(name)))
            drop_database(name)
            copies.remove(name)
    finally:
        for name in [*copies, template]:
            drop_database(name)


# -- lateness ----------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lower, upper = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (k - lower)


def part_lateness(window: float) -> None:
    print(
        f"\n2. Lateness: {LATENESS_TIMERS} timers spread over {window:.0f} s, "
        "one `frontdoor worker` (its APScheduler loop)"
    )
    name = create_database()
    worker = None
    try:
        prepare(name)
        url = url_of(name)
        lead = 15.0  # room for setup and for the worker to start before the first timer is due
        first = datetime.now(UTC) + timedelta(seconds=lead)
        step = window / LATENESS_TIMERS
        dues = [(first + timedelta(seconds=i * step)).isoformat() for i in range(LATENESS_TIMERS)]
        start_instances((url, dues, datetime.now(UTC).isoformat()))  # the real time: none due yet
        if datetime.now(UTC) >= first:
            print("    setup took longer than the lead time; figures would be meaningless")
            return
        with tempfile.TemporaryDirectory() as work:
            log = Path(work) / "worker.log"
            with log.open("w") as out:
                worker = subprocess.Popen(
                    [str(FRONTDOOR), "--database-url", url, "worker"], cwd=ROOT, stdout=out, stderr=out
                )
            last = datetime.fromisoformat(dues[-1])
            watcher = sa.create_engine(url)
            deadline = time.monotonic() + (last - datetime.now(UTC)).total_seconds() + 30
            while fired_count(watcher) < LATENESS_TIMERS and time.monotonic() < deadline:
                time.sleep(0.5)
            watcher.dispose()
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
            with sa.create_engine(url).connect() as connection:
                rows = connection.execute(
                    sa.text("SELECT extract(epoch FROM fired_at - due_at) FROM timer WHERE status = 'fired'")
                ).scalars()
                lateness = [float(v) for v in rows]
        fired = len(lateness)
        print(f"    fired {fired}/{LATENESS_TIMERS}")
        if not lateness:
            return
        p50, p99 = percentile(lateness, 50), percentile(lateness, 99)
        print(
            f"    lateness (fired_at - due_at): p50 {p50:.3f} s, p99 {p99:.3f} s, max {max(lateness):.3f} s, "
            f"min {min(lateness):.3f} s, mean {statistics.fmean(lateness):.3f} s"
        )
        verdict = "MET" if p99 <= LATENESS_TARGET and fired == LATENESS_TIMERS else "MISSED"
        print(f"    target p99 <= {LATENESS_TARGET:.0f} s: {verdict}")
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        drop_database(name)


# -- idle -----------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of the full line


def backend_pids(name: str) -> list[int]:
    admin = admin_engine()
    with admin.connect() as connection:
        pids = list(
            connection.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            ).scalars()
        )
    admin.dispose()
    return [int(p) for p in pids]


def backends_cpu(pids: list[int]) -> float | None:
    try:
        return sum(cpu_seconds(pid) for pid in pids)
    except (OSError, ValueError):
        return None


def part_idle(window: float, waiting: int) -> None:
    print(
        f"\n3. Idle: {waiting:,} waiting timers, none due for a day; "
        f"one `frontdoor worker` for {window:.0f} s"
    )
    name = create_database()
    worker = None
    try:
        prepare(name)
        url = url_of(name)
        later = datetime.now(UTC) + timedelta(days=30)
        start_instances((url, [later.isoformat()] * 5, datetime.now(UTC).isoformat()))
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            # Copies of the five real timer rows, due between one and thirty days from now.
            connection.execute(
                sa.text(
                    "INSERT INTO timer (instance_id, case_id, task_id, element_id, name, kind, due_at, "
                    "status, created_at, attempts) "
                    "SELECT t.instance_id, t.case_id, t.task_id, t.element_id, t.name, t.kind, "
                    "(now() at time zone 'utc') + interval '1 day' "
                    "+ (g * interval '1 second' * 2592000 / :n), "
                    "'waiting', t.created_at, 0 "
                    "FROM generate_series(1, :n) AS g JOIN timer t ON t.id = 1 + (g % 5)"
                ),
                {"n": waiting - 5},
            )
            connection.execute(sa.text("ANALYZE timer"))
            total = connection.execute(
                sa.text("SELECT count(*) FROM timer WHERE status = 'waiting'")
            ).scalar_one()
        engine.dispose()
        with tempfile.TemporaryDirectory() as work:
            log = Path(work) / "worker.log"
            with log.open("w") as out:
                worker = subprocess.Popen(
                    [str(FRONTDOOR), "--database-url", url, "worker"], cwd=ROOT, stdout=out, stderr=out
                )
            time.sleep(5)  # imports, connection, the first tick
            backends = backend_pids(name)
            cpu0, db0, t0 = cpu_seconds(worker.pid), backends_cpu(backends), time.perf_counter()
            time.sleep(window)
            cpu1, db1, t1 = cpu_seconds(worker.pid), backends_cpu(backends), time.perf_counter()
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        minutes = (t1 - t0) / 60
        per_minute = (cpu1 - cpu0) / minutes
        print(f"    waiting timers: {total:,}")
        print(f"    worker CPU while idle: {per_minute:.3f} CPU s per minute (over {t1 - t0:.0f} s)")
        if db0 is not None and db1 is not None:
            print(
                f"    its database backends ({len(backends)}): {(db1 - db0) / minutes:.3f} CPU s per minute "
                "(information, not the target)"
            )
        verdict = "MET" if per_minute < IDLE_TARGET else "MISSED"
        print(f"    target < {IDLE_TARGET:.0f} CPU s per minute: {verdict}")
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        drop_database(name)


# -- main -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 timers and 30 s windows")
    parser.add_argument(
        "--only",
        choices=["burst", "lateness", "idle"],
        action="append",
        help="run only these parts (repeatable)",
    )
    args = parser.parse_args()
    parts = set(args.only or ["burst", "lateness", "idle"])
    try:
        admin = admin_engine()
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        admin.dispose()
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        print(f"PostgreSQL not reachable at {POSTGRES_SERVER}: {type(exc).__name__}; nothing measured")
        return
    burst = 1_000 if args.quick else 10_000
    window = 30.0 if args.quick else 60.0
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"Timer benchmarks ({'quick' if args.quick else 'full'}) on {POSTGRES_SERVER}, "
        f"{os.cpu_count()} CPUs, load average {load} (other work on the machine skews the figures)"
    )
    began = time.perf_counter()
    if "burst" in parts:
        part_burst(burst)
    if "lateness" in parts:
        part_lateness(window)
    if "idle" in parts:
        part_idle(window, IDLE_TIMERS)
    end_load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\ntotal run time {time.perf_counter() - began:.0f} s; load average at the end {end_load}")


if __name__ == "__main__":
    main()
