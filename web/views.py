"""The front page: straight to the signed-in person's work."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, url_for
from flask_login import login_required

bp = Blueprint("views", __name__)


@bp.route("/")
@login_required
def home() -> Any:
    return redirect(url_for("queues.my_tasks"))


@bp.route("/healthz")
def health() -> Any:
    """For load balancers and the container health check: the database answers."""
    import sqlalchemy as sa
    from flask import current_app

    from . import engine_of

    with engine_of(current_app).db.read() as session:
        session.execute(sa.text("SELECT 1"))
    return {"status": "ok"}
