"""What every report section receives: the checkpoint, the settings and the page's asset helpers.

A section is a function ``section(ctx: ReportContext) -> dict(title=..., html=...)``; it builds its
figures with :meth:`ReportContext.figure` and its attention views with :meth:`ReportContext.attention`
so that the page embeds plotly.js and circuitsvis once, whatever the number of views.
"""

from __future__ import annotations

import html as _html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float
from torch import Tensor

from ..core.checkpoint import Checkpoint
from .assets import ElementIds, attention_heads_html, figure_html, render_circuitsvis


@dataclass(frozen=True)
class ReportSettings:
    """Sample sizes and choices of one report.

    Args:
        n: operand pairs per evaluation set (each accuracy-grid cell, each snapshot's ID and OOD set);
            None: 500 (100 with ``quick``).
        quick: small sample sizes everywhere (for tests and previews).
        seed: seed of every sampled set.
        sections: keys of the sections to build (None: all, in page order).
    """

    n: int | None = None
    quick: bool = False
    seed: int = 0
    sections: tuple[str, ...] | None = None

    @property
    def n_samples(self) -> int:
        if self.n is not None:
            if self.n < 1:
                raise ValueError(f"n must be >= 1, got {self.n}")
            return self.n
        return 100 if self.quick else 500


@dataclass
class ReportContext:
    """Shared state of one report build (one per page)."""

    ckpt: Checkpoint
    settings: ReportSettings = field(default_factory=ReportSettings)
    ids: ElementIds = field(default_factory=ElementIds)
    memo: dict[str, Any] = field(default_factory=dict)  # results sections may share, by key

    def figure(self, fig, height: int | None = None) -> str:
        """A plotly figure as an HTML fragment (no JavaScript of its own)."""
        return figure_html(fig, self.ids, height)

    def attention(
        self, attention: Float[Tensor, "head dest src"], tokens: list[str], head_names: list[str] | None = None
    ) -> str:
        """A circuitsvis AttentionHeads view as an HTML fragment."""
        return attention_heads_html(attention, tokens, self.ids, head_names)

    def circuitsvis(self, element: str, **props) -> str:
        """Any other circuitsvis element by its React name, e.g. ``ctx.circuitsvis("ColoredTokens", ...)``."""
        return render_circuitsvis(element, props, self.ids)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per report; later sections asking for ``key`` reuse the result."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


def escape(text: Any) -> str:
    return _html.escape(str(text), quote=True)


def table(rows: list[tuple[Any, Any]] | list[list[Any]], header: list[str] | None = None, cls: str = "kv") -> str:
    """A small HTML table of escaped cells."""
    out = [f'<table class="{cls}">']
    if header:
        out.append("<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)
