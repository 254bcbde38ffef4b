"""Letters as PDF: Jinja2 templates in ``processes/letters/`` rendered by WeasyPrint.

Process owners edit the wording (the templates are data, beside the diagrams); the engine calls
:meth:`WeasyPrintLetters.render` through its ``LetterRenderer`` port when a letter task is
completed.  Templates run in Jinja2's sandbox and WeasyPrint may fetch nothing but files in the
letters folder (the stylesheet, a logo): a template cannot read other files or reach the network.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from engine.ports import LetterRequest, RenderedLetter

LONDON = ZoneInfo("Europe/London")


def long_date(value: Any) -> str:
    """'Wednesday 6 March 2024' for a date, an instant (London time) or an ISO string."""
    from datetime import date, datetime

    if value in (None, ""):
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value[:10])
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.astimezone(LONDON).date() if value.tzinfo else value.date()
    return f"{value:%A} {value.day} {value:%B %Y}"


def day_month_year(value: Any) -> str:
    """'1 May 2016' (a date of birth reads without its weekday)."""
    return " ".join(long_date(value).split(" ")[1:]) if value not in (None, "") else ""


class WeasyPrintLetters:
    def __init__(self, processes_dir: Path) -> None:
        self.folder = (processes_dir / "letters").resolve()
        self.council_file = processes_dir / "council.json"
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(self.folder)),
            autoescape=True,
            # A field the data does not hold prints as nothing, so a letter for a path that
            # skipped a step still reads; templates say {% if %} where a gap would show.
            undefined=jinja2.ChainableUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["long_date"] = long_date
        self.env.filters["day_month_year"] = day_month_year
        self._lock = threading.Lock()
        self._fonts: Any = None

    def council(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.council_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data

    def html(self, request: LetterRequest) -> str:
        """The letter as HTML (what the PDF is made from)."""
        name = request.template if request.template.endswith(".html") else f"{request.template}.html"
        if "/" in name or "\\" in name or name.startswith((".", "_")):
            raise ValueError(
                f"{request.template!r} is not a letter template name; use a file name in letters/"
            )
        try:
            template = self.env.get_template(name)
        except jinja2.TemplateNotFound:
            raise ValueError(f"there is no template {name} in {self.folder}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"{exc.filename or name} line {exc.lineno}: {exc.message}") from None
        try:
            return template.render(
                council=self.council(),
                recipient=request.recipient,
                case_reference=request.case_reference,
                child_name=request.subject_name,
                date=long_date(request.written_at),
                written_by=request.written_by_name,
                worker=request.worker_name,
                **request.data,
            )
        except jinja2.TemplateError as exc:
            raise ValueError(f"{name}: {exc}") from None

    def render(self, request: LetterRequest) -> RenderedLetter:
        import weasyprint  # heavy: loaded on the first letter, not with every command line
        from weasyprint.text.fonts import FontConfiguration

        html = self.html(request)
        # One font configuration for every letter halves the time of each (fonts are found once);
        # the lock because web threads may write letters at the same moment.
        with self._lock:
            if self._fonts is None:
                self._fonts = FontConfiguration()
            document = weasyprint.HTML(
                string=html, base_url=self.folder.as_uri() + "/", url_fetcher=_folder_fetcher(self.folder)
            ).render(font_config=self._fonts)
            pdf = document.write_pdf()
        title = document.metadata.title or request.template
        return RenderedLetter(pdf=pdf, title=str(title))


def _folder_fetcher(folder: Path) -> Any:
    """A WeasyPrint fetcher for files inside ``folder`` only: nothing else on disk, nothing on the network."""
    from weasyprint.urls import URLFetcher

    class FolderFetcher(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("file:"):
                from urllib.parse import unquote, urlparse

                path = Path(unquote(urlparse(url).path)).resolve()
                if path.is_relative_to(folder):
                    return super().fetch(url, headers)
            elif url.startswith("data:"):
                return super().fetch(url, headers)
            raise ValueError(f"letters may use only files in {folder}, not {url}")

    return FolderFetcher(allowed_protocols={"file", "data"})
