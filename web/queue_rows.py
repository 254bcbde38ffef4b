"""The HTML of one queue row, and of its Assign form: plain GOV.UK table and form markup.

Written here in Python rather than as a Jinja macro because a queue page has up to 200 rows: the
macro (its calls, attribute lookups and escaping through the template runtime) took three to four
times as long as this, and was the largest part of the page's time (bench/web_queues.py).  The
templates call these as ``queue_row(...)`` and ``assign_form(...)`` (registered in web.queues).
Every value from the database goes through ``escape``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from .queues import Page, Row, Section


class Escaped(dict[str, str]):
    """Escaped text, worked out once per distinct value: a page of 200 rows names the same few
    steps, processes, roles, dates and holders over and over."""

    def __missing__(self, text: str) -> str:
        escaped = self[text] = str(escape(text))
        return escaped


_BUTTON = (
    '<button type="submit" class="govuk-button govuk-button--secondary fd-button--small" '
    'data-module="govuk-button" data-prevent-double-click="true">'
)


def _form(row: Row, action: str, page: Page, body: str) -> str:
    url = f"{escape(row.url)}/{action}"
    return (
        f'<form method="post" action="{url}" hx-post="{url}" hx-target="closest tr" hx-swap="outerHTML" '
        f'class="fd-row-form" novalidate>\n  {page.hidden}\n  {body}\n</form>'
    )


def _action(row: Row, action: str, label: str, page: Page, about: str) -> str:
    body = f'{_BUTTON}{label}<span class="govuk-visually-hidden"> {about}</span></button>'
    return _form(row, action, page, body)


def assign_form(row: Row, page: Page, focus: bool = False) -> Markup:
    """The row's Assign form: a select of who may hold it, and a button."""
    options = ['<option value="">Choose someone</option>']
    for username, label in row.assign_options or []:
        selected = " selected" if username == row.assignee else ""
        options.append(f'<option value="{escape(username)}"{selected}>{escape(label)}</option>')
    select_id = f"assign-{escape(row.id)}"
    body = (
        '<div class="govuk-form-group fd-assign">\n'
        f'    <label class="govuk-label govuk-label--s" for="{select_id}">Assign'
        f'<span class="govuk-visually-hidden"> {escape(row.about)}</span> to</label>\n'
        f'    <select class="govuk-select" id="{select_id}" name="assignee"{" autofocus" if focus else ""}>\n'
        + "\n".join(f"      {option}" for option in options)
        + "\n    </select>\n  </div>\n  "
        + f"{_BUTTON}Assign</button>"
    )
    return Markup(_form(row, "assign", page, body))


def queue_row(row: Row, page: Page, message: str | None = None, error: str | None = None) -> Markup:
    """One task as a table row; ``message`` / ``error`` in its actions cell after an htmx action."""
    due = row.due
    about = escape(row.about)
    if row.reference:
        child_name = escape(row.child_name or "Unnamed child")
        child = (
            f'<a class="govuk-link" href="{escape(row.case_url)}">{child_name}</a>'
            if row.case_url
            else child_name
        )
        child += f'\n      <span class="govuk-body-s fd-block">{escape(row.reference)}</span>'
        if row.siblings and not page.partner:
            siblings = escape(", ".join(row.siblings))
            child += f'<span class="govuk-body-s fd-block fd-sibling-of">Sibling of {siblings}</span>'
    else:
        child = '<span class="fd-muted">No child: a team task</span>'
    same = page.escaped
    role = f'<span class="govuk-body-s fd-block">{same[row.role]}</span>' if row.role else ""
    when = ""
    if due.iso:
        when = (
            f'<time datetime="{escape(due.iso)}">{same[due.date_text]}'
            f'<span class="govuk-body-s fd-block">{same[due.time_text]}</span></time>'
        )
    if not row.assignee:
        holder = "Not claimed"
    elif row.assignee == page.username:
        holder = "You"
    else:
        holder = same[row.assignee_name or row.assignee]
    if row.escalation_level:
        colour = "govuk-tag--red" if row.escalation_level >= 2 else "govuk-tag--orange"
        escalation = f'<strong class="govuk-tag {colour}">Level {row.escalation_level}</strong>'
        if row.escalation_label:
            escalation += f'<span class="govuk-body-s fd-block">{same[row.escalation_label]}</span>'
    else:
        escalation = '<span class="fd-muted">None</span>'
    actions = []
    if error:
        actions.append(
            '<p class="govuk-error-message" role="alert"><span class="govuk-visually-hidden">Error:</span> '
            f"{escape(error)}</p>"
        )
    if message:
        actions.append(f'<p class="govuk-body-s fd-row-message" role="status">{escape(message)}</p>')
    if row.can_claim:
        actions.append(_action(row, "claim", "Claim", page, about))
    if row.can_release:
        actions.append(_action(row, "unclaim", "Release", page, about))
    if row.assign_options is not None:
        actions.append(assign_form(row, page))
    elif row.can_assign:
        # A button that asks for this page again with the row's form open (?assign=<task>): htmx puts
        # just the form in its place; without JavaScript the page comes back at this row.
        task_id, path = escape(row.id), escape(page.path)
        actions.append(
            f'<form method="get" action="{path}#task-{task_id}" id="assign-control-{task_id}" '
            f'hx-get="{path}" hx-target="this" hx-swap="outerHTML" class="fd-row-form" novalidate>\n'
            f'  {page.filter_fields}<input type="hidden" name="assign" value="{task_id}">\n'
            f'  {_BUTTON}Assign<span class="govuk-visually-hidden"> {about} to someone</span></button>\n'
            "</form>"
        )
    return Markup(
        f'<tr class="govuk-table__row" id="task-{escape(row.id)}">\n'
        f'  <td class="govuk-table__cell">\n    <a class="govuk-link" href="{escape(row.url)}">'
        f"{same[row.name]}</a>\n  </td>\n"
        f'  <td class="govuk-table__cell">\n      {child}\n  </td>\n'
        f'  <td class="govuk-table__cell">\n    {same[row.process]}\n    {role}\n  </td>\n'
        f'  <td class="govuk-table__cell">\n    {when}\n'
        f'    <strong class="fd-due fd-block {due.css}">{same[due.words]}</strong>\n  </td>\n'
        f'  <td class="govuk-table__cell">\n    {holder}\n  </td>\n'
        f'  <td class="govuk-table__cell">\n    {escalation}\n  </td>\n'
        f'  <td class="govuk-table__cell fd-actions">\n    ' + "\n    ".join(actions) + "\n  </td>\n</tr>"
    )


def queue_sections(sections: list[Section], page: Page) -> Markup:
    """The queue table's bodies: one per row, or one per group of siblings under its heading (never
    for a partner, who is not told that children are siblings)."""
    out = []
    for section in sections:
        heading = section.heading and not page.partner
        out.append(f'<tbody class="govuk-table__body{" fd-sibling-group" if heading else ""}">')
        if heading:
            out.append(
                '<tr class="govuk-table__row">\n  <th scope="rowgroup" colspan="7" '
                f'class="govuk-table__header fd-sibling-heading">{escape(section.heading)}</th>\n</tr>'
            )
        out.extend(queue_row(row, page) for row in section.rows)
        out.append("</tbody>")
    return Markup("\n".join(out))
