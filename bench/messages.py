"""BPMN message delivery: what a partner's referral about an open child costs.

Run: ``.venv/bin/python bench/messages.py [--quick]``.  Prints figures; not a test.  On a fresh
SQLite file (WAL), ``frontdoor init`` deploys ``processes/``; then N children (``--quick`` 200,
else 2,000) are opened through the contact process (each waits for ``new_information``, one
``message_subscription`` row each).  Figures:

1. opening a contact (``start_for_subjects``, one child), with the subscription projection;
2. ``Engine.correlate_message`` to a random open child: look up by (name, key) in the indexed
   subscription table, lock, restore, catch, run, project, save, audit;
3. a miss (no child waits with that key): the indexed lookup alone.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from engine import clock  # noqa: E402
from engine.clock import FakeClock  # noqa: E402
from engine.core import Engine  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.errors import NotFound  # noqa: E402
from engine.messages import subject_key  # noqa: E402
from engine.models import MessageSubscription  # noqa: E402

CONTACT = {
    "received_at": "2024-03-06T09:10",
    "referrer": {"name": "PC Dana Reid", "organisation": "Police", "relationship": "PC"},
    "source": "6",
    "concern": "Domestic incident",
    "consent": {"sought": False, "reason_not_sought": "Risk to the child"},
}


def child(n: int) -> dict[str, str]:
    birth = datetime(2010, 1, 1) + timedelta(days=n % 5000)
    return {"name": f"Child Number {n}", "date_of_birth": birth.date().isoformat()}


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[int(len(values) * 0.95) - 1]
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    children = 200 if args.quick else 2000
    deliveries = 50 if args.quick else 200
    clock.set_clock(FakeClock(datetime(2024, 3, 6, 9, 30, tzinfo=UTC)))
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Database(f"sqlite:///{Path(tmp) / 'bench.db'}"))
        engine.init(demo=True)
        opened = []
        for n in range(children):
            began = time.perf_counter()
            engine.start_for_subjects(
                "contact",
                "sam.screener",
                [child(n)],
                CONTACT,
                team_key="mash",
                subject_field="child",
                subjects_field="children",
            )
            opened.append(time.perf_counter() - began)
        with engine.db.read() as session:
            rows = session.scalar(sa.select(sa.func.count()).select_from(MessageSubscription))
        print(f"SQLite; {children} open contacts, {rows} message subscriptions")
        print(f"1. open a contact (one child):           {ms(opened)}")
        rng = random.Random(7)
        delivered = []
        for _ in range(deliveries):
            c = child(rng.randrange(children))
            key = subject_key(c["name"], c["date_of_birth"])
            began = time.perf_counter()
            engine.correlate_message("new_information", key, {"concern": "More"}, "police-system")
            delivered.append(time.perf_counter() - began)
        print(f"2. deliver to an open child:             {ms(delivered)}")
        missed = []
        for n in range(deliveries):
            began = time.perf_counter()
            with contextlib.suppress(NotFound):
                engine.correlate_message("new_information", f"nobody {n}|2000-01-01", {}, "police-system")
            missed.append(time.perf_counter() - began)
        print(f"3. no child waits with that key:         {ms(missed)}")
        engine.db.dispose()


if __name__ == "__main__":
    main()
