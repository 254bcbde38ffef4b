"""What writing a letter adds to completing a letter task (SQLite, the shipped processes/).

Run: ``.venv/bin/python bench/letters.py [--quick]``.  Prints figures; not a test.  Cases are
referrals declined at once, so the family's outcome letter is the open task; each is completed
through ``Engine.complete`` with and without the WeasyPrint renderer.  The PDF is written inside
the completion's transaction (the letter exists exactly when the completion does), so this is
also how much longer a letter task holds SQLite's write lock than another task.  The first
letter in a process also loads WeasyPrint and the fonts: shown on its own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.letters import WeasyPrintLetters
from engine.core import Engine
from engine.db import Database

CONSENT = {"sought": True, "given": True}
ANSWERS = {
    "family_outcome_letter": {
        "sent_to": "Mrs Carol Ashdown",
        "method": "post",
        "summary": "No further action: the school will keep supporting the family",
    }
}


def open_letter_tasks(engine: Engine, count: int, prefix: str) -> list[str]:
    tasks = []
    for n in range(count):
        reference = f"{prefix}-{n}"
        engine.start(
            "referral",
            "mo.manager",
            case_reference=reference,
            team_key="assessment",
            subject_name=f"Child {n}",
            data={
                "received_at": "2024-03-06T09:00",
                "referrer": {"name": "Jo Head", "relationship": "Teacher"},
                "source": "2A",
                "concern": "Came to school hungry",
                "consent": CONSENT,
                "child": {"name": f"Child {n}", "date_of_birth": "2016-05-01"},
                "mash_decision": {"response": "referral", "reasons": "Neglect", "consent": CONSENT},
            },
        )
        [accept] = [t for t in engine.tasks(case_reference=reference) if t.element_id == "accept_referral"]
        engine.complete(accept.id, "tara.team", {"accept_referral": False, "referral_nfa_reason": "Met"})
        [letter] = [
            t for t in engine.tasks(case_reference=reference) if t.element_id == "family_outcome_letter"
        ]
        tasks.append(letter.id)
    return tasks


def timed_completions(engine: Engine, task_ids: list[str]) -> list[float]:
    times = []
    for task_id in task_ids:
        started = time.perf_counter()
        engine.complete(task_id, "sara.social", ANSWERS)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    count = 10 if parser.parse_args().quick else 40
    with tempfile.TemporaryDirectory() as folder:
        engine = Engine(Database(f"sqlite:///{Path(folder) / 'bench.db'}"))
        engine.init(demo=True)
        without = open_letter_tasks(engine, count, "PLAIN")
        with_letters = open_letter_tasks(engine, count + 1, "LETTER")
        plain = timed_completions(engine, without)
        engine.use_letter_renderer(WeasyPrintLetters(engine.registry.root))
        first, *rest = timed_completions(engine, with_letters)
        engine.db.dispose()
    print(f"completing a letter task, {count} each, SQLite, ms per completion")
    print(f"  without a letter:      median {statistics.median(plain):7.1f}  max {max(plain):7.1f}")
    print(f"  writing the PDF:       median {statistics.median(rest):7.1f}  max {max(rest):7.1f}")
    print(f"  first letter (cold):          {first:7.1f}  (loads WeasyPrint and the fonts)")


if __name__ == "__main__":
    main()
