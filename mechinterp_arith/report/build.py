"""Build the report page: run each section, fill the template, write ``index.html`` atomically.

>>> from mechinterp_arith import load
>>> result = build_report(load("add3"), "/tmp/report", ReportSettings(quick=True))   # doctest: +SKIP
>>> result.path, result.size_bytes                                                  # doctest: +SKIP
(PosixPath('/tmp/report/index.html'), ...)
"""

from __future__ import annotations

import datetime as _dt
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup
from tqdm.auto import tqdm

from ..core.checkpoint import Checkpoint
from ..core.files import atomic_write_text
from ..core.locks import exclusive
from ..core.version import __version__
from .assets import circuitsvis_js, plotly_js, plotly_js_version
from .context import ReportContext, ReportSettings, escape
from .sections import SECTIONS

TEMPLATE = "report.html.j2"
INDEX = "index.html"


@dataclass
class SectionResult:
    key: str
    id: str
    title: str
    html: str
    status: str  # "ok" or "error"
    seconds: float
    error: str | None = None


@dataclass
class ReportResult:
    """What :func:`build_report` wrote."""

    path: Path
    size_bytes: int
    seconds: float
    sections: list[SectionResult] = field(default_factory=list)

    @property
    def errors(self) -> list[SectionResult]:
        return [s for s in self.sections if s.status == "error"]

    def summary(self) -> dict:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 2),
            "sections": [
                {
                    "key": s.key,
                    "title": s.title,
                    "status": s.status,
                    "seconds": round(s.seconds, 2),
                    **({"error": s.error} if s.error else {}),
                }
                for s in self.sections
            ],
        }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _selected(keys: tuple[str, ...] | None) -> list[str]:
    if keys is None:
        return list(SECTIONS)
    unknown = [k for k in keys if k not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown report section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return [k for k in SECTIONS if k in keys]


def run_section(key: str, ctx, section=None) -> SectionResult:
    """One section (``section``, default ``SECTIONS[key]``) on ``ctx``, timed; an exception becomes an
    error box naming it instead of a lost page."""
    start = time.perf_counter()
    try:
        out = (section or SECTIONS[key])(ctx)
        if not isinstance(out, dict) or "title" not in out or "html" not in out:
            raise TypeError(f"section {key!r} must return dict(title=..., html=...), got {type(out).__name__}")
        title, html, status, error = str(out["title"]), str(out["html"]), out.get("status", "ok"), None
    except Exception as e:
        title, status, error = key.replace("_", " ").capitalize(), "error", f"{type(e).__name__}: {e}"
        html = (
            f'<div class="section-error"><strong>This section failed.</strong> {escape(error)}'
            f"<pre>{escape(traceback.format_exc(limit=-3))}</pre></div>"
        )
    return SectionResult(
        key, f"section-{key.replace('_', '-')}", title, html, status, time.perf_counter() - start, error
    )


def render_page(ctx: ReportContext, sections: list[SectionResult], command: str | None = None) -> str:
    """The whole page as one string (plotly.js and circuitsvis inlined once)."""
    ckpt = ctx.ckpt
    task = ckpt.task
    return render_sections(
        title=f"mechinterp-arith report: {ckpt.name}",
        subtitle=f"{task.name}: {task.describe()} ({task.format} format), trained on {task.digits}-digit operands",
        sections=sections,
        command=command,
        settings=f"n={ctx.settings.n_samples} per set, seed {ctx.settings.seed}"
        + (", quick" if ctx.settings.quick else ""),
    )


def render_sections(
    title: str, subtitle: str, sections: list[SectionResult], command: str | None = None, settings: str = ""
) -> str:
    """A report page of ``sections`` (the checkpoint report's and the sweep report's), assets inlined once."""
    import circuitsvis
    import plotly

    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            title=title,
            subtitle=subtitle,
            generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            version=__version__,
            command=command,
            sections=[{**asdict(s), "html": Markup(s.html)} for s in sections],
            plotly_js=Markup(plotly_js()),
            circuitsvis_js=Markup(circuitsvis_js()),
            plotly_version=plotly_js_version(),
            plotly_py_version=plotly.__version__,
            circuitsvis_version=getattr(circuitsvis, "__version__", "?"),
            settings=settings,
        )
    )


def write_parts_page(
    out_dir: str | Path, title: str, subtitle: str, parts: dict[str, Callable[[object], dict[str, str]]], settings: str
) -> Path:
    """Run each part (``key -> fn(None) -> dict(title, html)``, an exception becomes an error box), render
    them on the reports' page and write ``out_dir/index.html`` atomically (the lab's and the repair page)."""
    sections = [run_section(key, None, fn) for key, fn in parts.items()]
    page = render_sections(title, subtitle, sections, settings=settings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "index.html", page)
    return out / "index.html"


def build_report(
    ckpt: Checkpoint,
    out_dir: str | Path,
    settings: ReportSettings | None = None,
    progress: bool = True,
    command: str | None = None,
) -> ReportResult:
    """Write ``out_dir/index.html`` (atomically) for a loaded checkpoint and return what was written.

    ``out_dir`` is checked (a directory, ``index.html`` not a folder) and locked before any section
    runs: a second report into the same folder is refused at once (``core/locks.py``)."""
    settings = settings or ReportSettings()
    keys = _selected(settings.sections)
    settings.n_samples  # noqa: B018 - validates n before any work
    path = Path(out_dir) / INDEX
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"{path.parent} is a file; the report needs a directory")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; the report writes a file there: remove or rename it")
    start = time.perf_counter()
    with exclusive(path):
        ckpt.model.eval()
        ctx = ReportContext(ckpt, settings)
        results = []
        bar = tqdm(keys, desc="report", unit="section", disable=not progress, leave=True)
        for key in bar:
            bar.set_postfix_str(key)
            results.append(run_section(key, ctx))
        atomic_write_text(path, render_page(ctx, results, command))
    return ReportResult(path, path.stat().st_size, time.perf_counter() - start, results)
