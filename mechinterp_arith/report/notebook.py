"""Offline figures in Jupyter: plotly without CDN or MathJax, circuitsvis attention with its bundle inlined.

plotly's ``notebook`` renderer embeds plotly.js but still adds a MathJax ``<script src=https://cdnjs...>``
to every figure, ``notebook_connected`` loads plotly.js from a CDN, and circuitsvis' notebook display
imports its code from unpkg. These helpers emit HTML that needs no network.

>>> from mechinterp_arith.report.notebook import use_offline_plotly, attention_views
>>> use_offline_plotly()             # fig.show() now embeds plotly.js once (first figure) and no MathJax
'mechinterp_offline'
>>> attention_views([("349 + 705", pattern, tokens)], head_names)   # doctest: +SKIP
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from .assets import ElementIds, attention_heads_html, circuitsvis_js

RENDERER = "mechinterp_offline"
_STATE = {"plotly_embedded": False}  # module-level: plotly copies renderer objects when it renders


class OfflineHTML:
    """An HTML fragment Jupyter displays as is (``_repr_html_``); ``str()`` gives the fragment."""

    def __init__(self, html: str) -> None:
        self.html = html

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.html


def use_offline_plotly(mimetype: bool = False) -> str:
    """Register and select a plotly renderer whose HTML embeds plotly.js with the first figure shown
    after this call (later figures call it) and never refers to MathJax or a CDN. With ``mimetype``
    the plotly JSON mime type goes along too (JupyterLab and VS Code render it with their own
    plotly.js; it doubles the size of every output). Returns the default renderer string it set."""
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class _Offline(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            html = pio.to_html(
                fig_dict,
                full_html=False,
                include_plotlyjs=not _STATE["plotly_embedded"],
                include_mathjax=False,
                config={"displaylogo": False, "responsive": True},
            )
            _STATE["plotly_embedded"] = True
            return {"text/html": html}

    _STATE["plotly_embedded"] = False

    pio.renderers[RENDERER] = _Offline()
    pio.renderers.default = ("plotly_mimetype+" if mimetype else "") + RENDERER
    return pio.renderers.default


def notebook_setup(threads: int | None = 1, seed: int = 0) -> None:
    """What every analysis notebook starts with: offline figures (:func:`use_offline_plotly`), torch
    threads (:func:`~mechinterp_arith.core.threads.set_threads`), torch's global seed and 4-digit
    pandas tables."""
    import pandas as pd
    import torch

    from ..core.threads import set_threads

    use_offline_plotly()
    set_threads(threads)
    torch.manual_seed(seed)
    pd.set_option("display.precision", 4)


class _PrefixedIds(ElementIds):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def __call__(self, prefix: str) -> str:
        return f"{self.prefix}-{super().__call__(prefix)}"


def attention_views(
    views: list[tuple[str, Float[Tensor, "head dest src"], list[str]]],
    head_names: list[str] | None = None,
    id_prefix: str = "nb",
    columns: bool = True,
) -> OfflineHTML:
    """circuitsvis ``AttentionHeads`` views, side by side, with circuitsvis's bundle inlined once.

    ``views``: ``(caption, attention [head, dest, src], tokens)`` per view. ``id_prefix`` keeps element
    ids unique when several notebooks share a page. Display the result (last expression of a cell)."""
    import html as _html

    ids = _PrefixedIds(id_prefix)
    style = "display:flex;gap:12px;flex-wrap:wrap" if columns else ""
    parts = [f"<script>{circuitsvis_js()}</script>", f'<div style="{style}">']
    for caption, attention, tokens in views:
        parts.append(
            f'<div style="flex:1;min-width:300px"><p><b>{_html.escape(caption)}</b></p>'
            f"{attention_heads_html(attention, tokens, ids, head_names)}</div>"
        )
    parts.append("</div>")
    return OfflineHTML("\n".join(parts))
