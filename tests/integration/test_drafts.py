"""Save as draft: half-done answers survive until the task is completed, and move nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine.core import Engine
from engine.errors import Conflict, InvalidData, PermissionDenied
from engine.models import AuditEvent, ProcessInstance

from .helpers import deploy_triage, open_task, start_triage


def test_a_draft_is_kept_on_the_task_and_cleared_on_completion(any_engine: Engine) -> None:
    deploy_triage(any_engine)
    started = start_triage(any_engine)
    task = open_task(any_engine, "C-1", "record_contact")
    with any_engine.db.read() as session:
        revision = session.scalar(sa.select(ProcessInstance.revision))

    any_engine.save_draft(task.id, "sam.screener", {"concern": "half writ"})

    saved = any_engine.get_task(task.id)
    assert saved.draft == {"concern": "half writ"} and saved.draft_saved_by == "sam.screener"
    assert saved.status == "ready"  # a draft claims nothing and moves nothing
    with any_engine.db.read() as session:
        assert session.scalar(sa.select(ProcessInstance.revision)) == revision
        actions = session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions[-1] == "task.draft_saved"

    any_engine.complete(task.id, "sam.screener", {"concern": "fully written"})
    assert not any_engine.get_task(task.id).draft
    assert any_engine.instance_data(started.instance_id)["concern"] == "fully written"


def test_only_someone_who_may_hold_the_task_saves_a_draft(any_engine: Engine) -> None:
    deploy_triage(any_engine)
    start_triage(any_engine)
    task = open_task(any_engine, "C-1", "record_contact")
    with pytest.raises(PermissionDenied):
        any_engine.save_draft(task.id, "pat.police", {"concern": "not mine"})
    any_engine.claim(task.id, "sam.screener")
    with pytest.raises(Conflict):
        any_engine.save_draft(task.id, "mo.manager", {"concern": "claimed by someone else"})
    with pytest.raises(InvalidData):
        any_engine.save_draft(task.id, "sam.screener", {"bad key!": 1})
    assert any_engine.get_task(task.id).draft is None
