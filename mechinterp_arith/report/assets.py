"""Offline assets of the report: plotly's and circuitsvis's JavaScript, embedded once per page.

Figures and attention views become small HTML fragments that call the page's global ``Plotly`` and
``CircuitsVis`` objects; :func:`page_scripts` returns the two bundles to inline once in ``<head>``.
Nothing refers to a CDN and nothing probes the network (unlike ``str(circuitsvis.attention...)``).

>>> import torch
>>> ids = ElementIds()
>>> html = attention_heads_html(torch.rand(3, 4, 4), ["a", "b", "c", "d"], ids)
>>> html.startswith('<div id="cv-1" class="cv-attention"')
True
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
from jaxtyping import Float
from torch import Tensor

PLOTLY_MARKER = "/* mechinterp-arith: plotly.js bundle */"
CIRCUITSVIS_MARKER = "/* mechinterp-arith: circuitsvis bundle */"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]}


class ElementIds:
    """Deterministic, page-unique element ids (``plot-1``, ``cv-1``...): same inputs, same page."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        self._counts[prefix] = self._counts.get(prefix, 0) + 1
        return f"{prefix}-{self._counts[prefix]}"


def _inline_safe(js: str) -> str:
    """JavaScript that can sit inside ``<script>``: no closing tag, no source-map fetch."""
    js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)
    return re.sub(r"^//# sourceMappingURL=.*$", "", js, flags=re.MULTILINE)


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js from the installed plotly package (no CDN)."""
    from plotly.offline import get_plotlyjs

    return PLOTLY_MARKER + "\n" + _inline_safe(get_plotlyjs())


def plotly_js_version() -> str:
    """The version of the plotly.js bundle embedded (its header, ``plotly.js v4.1.1``), not the
    Python package's (plotly 7.1.0 ships plotly.js 4.1.1)."""
    from plotly.offline import get_plotlyjs

    found = re.search(r"plotly\.js v(\d+\.\d+\.\d+\S*)", get_plotlyjs()[:2000])
    return found.group(1) if found else "?"


def circuitsvis_bundle_path() -> Path:
    """The browser bundle shipped inside the circuitsvis package (defines global ``CircuitsVis``)."""
    import circuitsvis

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    if not path.is_file():
        raise FileNotFoundError(f"circuitsvis's browser bundle is missing at {path}; reinstall circuitsvis")
    return path


@functools.lru_cache(maxsize=1)
def circuitsvis_js() -> str:
    """circuitsvis's IIFE bundle, made safe to inline."""
    return CIRCUITSVIS_MARKER + "\n" + _inline_safe(circuitsvis_bundle_path().read_text(encoding="utf-8"))


def figure_html(fig, ids: ElementIds, height: int | None = None) -> str:
    """A plotly figure as a ``<div>`` + inline script using the page's single plotly.js."""
    if height is not None:
        fig.update_layout(height=height)
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=ids("plot"), config=PLOTLY_CONFIG)


def _rounded(x: Float[Tensor, ...] | np.ndarray, decimals: int = 4) -> list:
    arr = x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    return np.round(arr, decimals).tolist()


def attention_heads_html(
    attention: Float[Tensor, "head dest src"],
    tokens: list[str],
    ids: ElementIds,
    head_names: list[str] | None = None,
) -> str:
    """A circuitsvis ``AttentionHeads`` view rendered by the page's inline bundle.

    The same element and props as ``circuitsvis.attention.attention_heads`` (see circuitsvis's
    ``utils/render.py``), but calling the global ``CircuitsVis.render`` instead of importing from unpkg.
    """
    if attention.ndim != 3 or attention.shape[1] != attention.shape[2] or attention.shape[1] != len(tokens):
        raise ValueError(
            f"attention must be [head, {len(tokens)}, {len(tokens)}] for {len(tokens)} tokens, "
            f"got {tuple(attention.shape)}"
        )
    props = {"attention": _rounded(attention), "tokens": list(tokens)}
    if head_names is not None:
        props["attentionHeadNames"] = list(head_names)
    return render_circuitsvis("AttentionHeads", props, ids)


def render_circuitsvis(element: str, props: dict, ids: ElementIds) -> str:
    """Any circuitsvis React element (``AttentionHeads``, ``ColoredTokens``...) as a div + inline call."""
    uid = ids("cv")
    payload = json.dumps(props, separators=(",", ":")).replace("</", "<\\/")
    return (
        f'<div id="{uid}" class="cv-attention" data-cv-element="{element}"></div>\n'
        f"<script>CircuitsVis.render({json.dumps(uid)}, CircuitsVis.{element}, {payload});</script>"
    )
