"""Frontdoor's web application: pages for people, a JSON API for systems.

``create_app`` builds the Flask application around one :class:`engine.core.Engine`.
Pages read the engine's projections (task, case, clock tables); every change goes
through an engine command.
"""

from __future__ import annotations

import gc
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, PrefixLoader

from engine.core import Engine
from engine.db import Database

from .auth import limiter, login_manager

csrf = CSRFProtect()

# No inline script or style anywhere: the pages' JavaScript is in static files.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _secret_key(instance_path: Path) -> str:
    """FRONTDOOR_SECRET_KEY, or a random key kept in instance/ (created once, never committed)."""
    configured = os.environ.get("FRONTDOOR_SECRET_KEY")
    if configured:
        return configured
    path = instance_path / "secret_key"
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def freeze_startup_heap() -> None:
    """Put everything built so far (the app, parsed process specs, templates, SQLAlchemy's caches)
    out of the cyclic garbage collector's reach, for the life of the process.

    A full collection otherwise walks that whole heap and stalls whichever request is running:
    on bench/web_queues.py's 100,000 cases the team queue's p95 went from 54 to 31 ms with this,
    the median barely moved. Production entry points call it once the app is built (`frontdoor
    web`, gunicorn.conf.py); create_app does not, because tests build hundreds of apps.
    """
    gc.collect()
    gc.freeze()


def create_app(config: dict[str, Any] | None = None, engine: Engine | None = None) -> Flask:
    app = Flask(__name__, instance_path=str(Path("instance").resolve()))
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=os.environ.get("FRONTDOOR_INSECURE_COOKIES") != "1",
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=True,
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None,
        RATELIMIT_STORAGE_URI=os.environ.get("FRONTDOOR_RATELIMIT_STORAGE", "memory://"),
        RATELIMIT_HEADERS_ENABLED=True,
        MAX_CONTENT_LENGTH=6 * 1024 * 1024,
    )
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(Path(app.instance_path))
    if engine is None:
        engine = Engine(Database(app.config.get("DATABASE_URL")))
    app.extensions["frontdoor.engine"] = engine
    from adapters import wire_letters

    wire_letters(engine)  # completing a letter task from a page writes its PDF
    council = engine.registry.read_json_optional("council.json") or {}
    app.config.setdefault("COUNCIL_NAME", council.get("name", "Frontdoor"))
    app.config.setdefault("SERVICE_NAME", council.get("service", "Children's Services Front Door"))

    app.jinja_loader = ChoiceLoader(
        [
            FileSystemLoader(str(Path(__file__).parent / "templates")),
            PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja")}),
        ]
    )
    app.jinja_env.filters["fd_error_link"] = lambda pair: {"text": pair[1], "href": f"#{pair[0]}"}

    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)

    from . import auth, views

    app.register_blueprint(auth.bp)
    app.register_blueprint(views.bp)
    from . import api, cases, contacts, manage, queues, tasks

    for module in (queues, tasks, contacts, cases, manage, api):
        app.register_blueprint(module.bp)
    from . import process_owner

    app.register_blueprint(process_owner.bp)
    from . import process_views

    app.register_blueprint(process_views.bp)
    csrf.exempt(api.bp)  # token-authenticated, no cookies

    @app.context_processor
    def council_names() -> dict[str, Any]:
        return {"council_name": app.config["COUNCIL_NAME"], "service_name": app.config["SERVICE_NAME"]}

    @app.after_request
    def security_headers(response: Any) -> Any:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.errorhandler(403)
    def forbidden(_error: Any) -> Any:
        return render_template("errors/403.html"), 403

    @app.errorhandler(404)
    def not_found(_error: Any) -> Any:
        return render_template("errors/404.html"), 404

    @app.errorhandler(413)
    def too_large(_error: Any) -> Any:
        return render_template(
            "errors/400.html", reason="The file or form is too large. Upload a file of 5 MB or less."
        ), 413

    @app.errorhandler(CSRFError)
    def csrf_failed(_error: Any) -> Any:
        return render_template(
            "errors/400.html", reason="The form had expired. Go back, reload and try again."
        ), 400

    return app


def engine_of(app: Flask) -> Engine:
    engine: Engine = app.extensions["frontdoor.engine"]
    return engine
