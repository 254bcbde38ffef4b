"""The process owner's pages: processes and their versions, a diagram of each version, and the
editor (bpmn-js modeler) with drafts, upload, validate and deploy.

Only for the process owner (:func:`web.access.is_process_owner`).  Every change goes through
:mod:`engine.drafts`; deploying a draft is the engine's own deploy (a new version; running cases
stay on theirs).  Findings are shown as a list (what a screen reader and the tests read) and as
overlays on the diagram (web/static/js/editor.js).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_login import login_required
from werkzeug.exceptions import RequestEntityTooLarge

from engine import drafts, validation
from engine.bpmn import MAX_BPMN_BYTES
from engine.errors import Conflict, DefinitionError, Finding, FrontdoorError, NotFound
from engine.models import ProcessDefinition, ProcessInstance

from . import CONTENT_SECURITY_POLICY, engine_of
from .access import is_process_owner, require
from .auth import Person, person
from .cases import date_time, plural

bp = Blueprint("process_owner", __name__, url_prefix="/processes")


# The diagram pages' Content-Security-Policy: the site's own, unrelaxed.  bpmn-js's prebuilt bundles
# set styles through the DOM (allowed by style-src 'self'); tests/browser/test_editor.py checks that
# the policy refuses nothing on these pages.  Kept as a name for pages that set it explicitly.
DIAGRAM_CSP = CONTENT_SECURITY_POLICY


def findings_for(content: bytes, filename: str) -> list[Finding]:
    """Everything that stops ``content`` being deployed ([] when it can be): the one place the pages ask.

    The engine's validation pipeline (what ``frontdoor validate`` prints); when it finds nothing, a
    deploy rolled back adds what only the database knows (a called process that is not deployed).
    """
    engine = engine_of(current_app)
    try:
        context = validation.ValidationContext.from_registry(engine.registry)
    except ValueError as exc:  # roles.json or rules.json is malformed: say which, do not fail
        return [Finding(f"the checks cannot run: {exc}", filename)]
    return validation.validate(content, filename, context) or drafts.check(engine, content, filename)


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "element_id": finding.element_id,
        "element_name": finding.element_name,
        "message": finding.message,
        "line": finding.line,
        "file": finding.file,
    }


def _owner() -> str:
    viewer = person()
    require(is_process_owner(viewer))
    return viewer.username


@bp.app_context_processor
def owner_navigation() -> dict[str, Any]:
    """The 'Processes' item of the service navigation, for process owners."""
    from flask_login import current_user

    viewer = current_user._get_current_object() if current_user else None  # type: ignore[attr-defined]
    if not isinstance(viewer, Person) or not is_process_owner(viewer):
        return {}
    active = (request.endpoint or "").startswith("process_owner.")
    return {"fd_owner_nav": [("Processes", url_for("process_owner.index"), active)]}


def _diagram_page(html: str, status: int = 200) -> Any:
    # bpmn-js's prebuilt bundles draw, edit and place overlays through the DOM's style properties,
    # which style-src 'self' allows: the diagram pages keep the site's strict policy (the browser
    # test checks that nothing is refused).
    return current_app.make_response((html, status))


def _xml(text: str, filename: str) -> Response:
    response = Response(text, mimetype="application/xml")
    response.headers["Content-Disposition"] = f'inline; filename="{_safe_filename(filename)}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _safe_filename(filename: str) -> str:
    return "".join(c for c in filename if c.isalnum() or c in "._-") or "diagram.bpmn"


# ---------------------------------------------------------------------- processes and versions


def _running_counts() -> dict[int, int]:
    with engine_of(current_app).db.read() as session:
        rows = session.execute(
            sa.select(ProcessInstance.definition_id, sa.func.count())
            .where(ProcessInstance.status == "running")
            .group_by(ProcessInstance.definition_id)
        )
        return {definition_id: count for definition_id, count in rows}


@bp.route("")
@login_required
def index() -> Any:
    _owner()
    return _index_page()


def _index_page(errors: list[dict[str, Any]] | None = None, status: int = 200) -> Any:
    engine = engine_of(current_app)
    running = _running_counts()
    processes: dict[str, dict[str, Any]] = {}
    for definition in engine.list_processes():
        entry = processes.setdefault(definition.key, {"key": definition.key, "versions": 0, "running": 0})
        entry["versions"] += 1
        entry["running"] += running.get(definition.id, 0)
        entry["name"] = definition.name or definition.key
        entry["latest"] = definition.version
        entry["deployed"] = date_time(definition.deployed_at)
        entry["url"] = url_for(".show", key=definition.key)
    draft_rows = [
        {
            "key": d.key,
            "filename": d.filename,
            "saved": f"{date_time(d.saved_at)} by {d.saved_by}",
            "url": url_for(".edit", key=d.key),
            "deployed": d.key in processes,
        }
        for d in drafts.all_drafts(engine)
    ]
    return render_template(
        "processes/index.html",
        processes=sorted(processes.values(), key=lambda p: str(p["name"]).lower()),
        drafts=draft_rows,
        errors=errors or [],
        plural=plural,
    ), status


@bp.route("/<key>")
@login_required
def show(key: str) -> Any:
    _owner()
    engine = engine_of(current_app)
    versions = drafts.versions(engine, key)
    draft = drafts.get(engine, key)
    if not versions and draft is None:
        return render_template("errors/404.html"), 404
    running = _running_counts()
    rows = [
        {
            "version": d.version,
            "deployed": date_time(d.deployed_at),
            "deployed_by": d.deployed_by,
            "filename": d.filename,
            "running": running.get(d.id, 0),
            "url": url_for(".version", key=key, version=d.version),
        }
        for d in versions
    ]
    name = versions[0].name if versions and versions[0].name else key
    # The pages of web/process_views.py about this process, where that blueprint is installed.
    related = [
        (endpoint, text)
        for endpoint, text in (
            ("process_views.migration", "Move running cases to another version"),
            ("process_views.heatmap", "Open and overdue work at each step"),
        )
        if endpoint in current_app.view_functions and versions
    ]
    return render_template(
        "processes/show.html",
        related=[{"href": url_for(endpoint, key=key), "text": text} for endpoint, text in related],
        key=key,
        name=name,
        versions=rows,
        draft=draft,
        draft_saved=f"{date_time(draft.saved_at)} by {draft.saved_by}" if draft else "",
        plural=plural,
    )


def _definition(key: str, version: int) -> ProcessDefinition:
    with engine_of(current_app).db.read() as session:
        definition = session.scalar(
            sa.select(ProcessDefinition).where(
                ProcessDefinition.key == key, ProcessDefinition.version == version
            )
        )
    if definition is None:
        raise NotFound(f"{key} has no version {version}")
    return definition


@bp.route("/<key>/versions/<int:version>")
@login_required
def version(key: str, version: int) -> Any:
    _owner()
    try:
        definition = _definition(key, version)
    except NotFound:
        return render_template("errors/404.html"), 404
    html = render_template(
        "processes/version.html",
        key=key,
        name=definition.name or key,
        definition=definition,
        deployed=date_time(definition.deployed_at),
        diagram_url=url_for(".version_xml", key=key, version=version),
    )
    return _diagram_page(html)


@bp.route("/<key>/versions/<int:version>/diagram.bpmn")
@login_required
def version_xml(key: str, version: int) -> Any:
    _owner()
    try:
        definition = _definition(key, version)
    except NotFound:
        return render_template("errors/404.html"), 404
    return _xml(definition.bpmn_xml, definition.filename)


# ---------------------------------------------------------------------- upload


@bp.route("/upload", methods=["POST"])
@login_required
def upload() -> Any:
    actor = _owner()
    try:
        uploaded = request.files.get("file")
    except RequestEntityTooLarge:
        return _upload_refused("The file is too large. Upload a BPMN file of 5 MB or less.", 413)
    if uploaded is None or not uploaded.filename:
        return _upload_refused("Choose a BPMN file to upload.")
    content = uploaded.read(MAX_BPMN_BYTES + 1)  # enough to say it is too large
    try:
        saved = drafts.upload(engine_of(current_app), uploaded.filename, content, actor)
    except DefinitionError as exc:
        reasons = [f"{uploaded.filename} cannot be opened: {f.message}" for f in exc.findings]
        return _index_page([{"text": reason, "href": "#file"} for reason in reasons], 400)
    except FrontdoorError as exc:
        return _upload_refused(f"{uploaded.filename} cannot be opened: {exc}")
    flash(f"{uploaded.filename} is now the draft of {saved.key} (revision {saved.revision}).", "success")
    return redirect(url_for(".edit", key=saved.key))


def _upload_refused(message: str, status: int = 400) -> Any:
    return _index_page([{"text": message, "href": "#file"}], status)


# ---------------------------------------------------------------------- the editor and drafts


@bp.route("/<key>/edit")
@login_required
def edit(key: str) -> Any:
    _owner()
    return _editor(key)


def _editor(
    key: str, findings: list[Finding] | None = None, problem: str | None = None, status: int = 200
) -> Any:
    engine = engine_of(current_app)
    draft = drafts.get(engine, key)
    versions = drafts.versions(engine, key)
    if draft is None and not versions:
        return render_template("errors/404.html"), 404
    if draft is not None:
        diagram_url = url_for(".draft_xml", key=key)
        saved = f"saved {date_time(draft.saved_at)} by {draft.saved_by}"
        source = f"the draft, revision {draft.revision}, {saved}"
    else:
        diagram_url = url_for(".version_xml", key=key, version=versions[0].version)
        source = f"version {versions[0].version} (deployed); saving makes a draft of it"
    html = render_template(
        "processes/edit.html",
        key=key,
        name=(versions[0].name if versions and versions[0].name else key),
        draft=draft,
        source=source,
        diagram_url=diagram_url,
        revision=draft.revision if draft else "",
        based_on=versions[0].version if versions else "",
        findings=[finding_json(f) for f in findings or []],
        checked=findings is not None,
        problem=problem,
    )
    return _diagram_page(html, status)


@bp.route("/<key>/draft.bpmn")
@login_required
def draft_xml(key: str) -> Any:
    _owner()
    draft = drafts.get(engine_of(current_app), key)
    if draft is None:
        return render_template("errors/404.html"), 404
    return _xml(draft.bpmn_xml, draft.filename)


def _seen_revision() -> int | None:
    raw = (request.form.get("revision") or "").strip()
    return int(raw) if raw.isdigit() else None


@bp.route("/<key>/draft", methods=["POST"])
@login_required
def save_draft(key: str) -> Any:
    """Save the editor's diagram (JSON answer for editor.js)."""
    actor = _owner()
    engine = engine_of(current_app)
    xml = request.form.get("xml", "")
    if not xml.strip():
        return {"error": "There is no diagram to save: the editor sent nothing."}, 400
    versions = drafts.versions(engine, key)
    current = drafts.get(engine, key)
    filename = current.filename if current else (versions[0].filename if versions else f"{key}.bpmn")
    try:
        saved = drafts.save(
            engine,
            key,
            xml.encode("utf-8"),
            filename,
            actor,
            _seen_revision(),
            based_on_version=versions[0].version if versions else None,
        )
    except DefinitionError as exc:
        findings = [finding_json(f) for f in exc.findings]
        return {"error": "The diagram cannot be saved.", "findings": findings}, 400
    except Conflict as exc:
        return {"error": str(exc)}, 409
    except NotFound as exc:
        return {"error": str(exc)}, 404
    return {"revision": saved.revision, "saved": date_time(saved.saved_at), "key": saved.key}


@bp.route("/<key>/draft/validate", methods=["POST"])
@login_required
def validate_draft(key: str) -> Any:
    """The saved draft's findings (JSON); [] means it can be deployed."""
    _owner()
    draft = drafts.get(engine_of(current_app), key)
    if draft is None:
        return {"error": f"There is no draft of {key} to check: save the diagram first."}, 404
    findings = findings_for(draft.bpmn_xml.encode("utf-8"), draft.filename)
    return {"revision": draft.revision, "findings": [finding_json(f) for f in findings], "ok": not findings}


@bp.route("/<key>/draft/deploy", methods=["POST"])
@login_required
def deploy_draft(key: str) -> Any:
    actor = _owner()
    engine = engine_of(current_app)
    seen = _seen_revision()
    if seen is None:
        return _editor(key, problem="Save the diagram before deploying it.", status=400)
    try:
        results = drafts.deploy(engine, key, seen, actor)
    except DefinitionError as exc:
        return _editor(key, findings=exc.findings, status=400)
    except (Conflict, NotFound) as exc:
        return _editor(key, problem=str(exc), status=409)
    except ValueError as exc:  # the council's roles.json or rules.json cannot be read
        return _editor(key, problem=f"Nothing was deployed: the checks cannot run: {exc}", status=400)
    created = [r for r in results if r.created]
    if created:
        words = "; ".join(f"version {r.version} of {r.key}" for r in created)
        flash(
            f"Deployed {words}. Running cases stay on their versions; new cases start on the new one.",
            "success",
        )
    else:
        flash("Nothing changed: the draft is the same as the newest version, which stays in use.", "success")
    target = created[0].key if created else (results[0].key if results else key)
    return redirect(url_for(".show", key=target))


@bp.route("/<key>/draft/discard", methods=["POST"])
@login_required
def discard_draft(key: str) -> Any:
    actor = _owner()
    seen = _seen_revision()
    try:
        if seen is None:
            raise NotFound(f"there is no draft of {key} to discard")
        drafts.discard(engine_of(current_app), key, seen, actor)
    except (Conflict, NotFound) as exc:
        flash(f"Could not discard the draft: {exc}", "error")
        return redirect(url_for(".index"))
    flash(f"The draft of {key} is discarded.", "success")
    return redirect(url_for(".index"))
