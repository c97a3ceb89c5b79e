"""Renderers of a replayed run. Every renderer takes the stable JSON shape produced by
``RunState.to_dict`` (docs/replay.md), never the fold's objects, so text, Markdown, HTML
and JSON can never show different things."""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("text", "json", "markdown", "html")


def render(doc: dict[str, Any], fmt: str, *, color: bool = False, full: bool = False) -> str:
    if fmt == "json":
        return json.dumps(doc, ensure_ascii=False, default=str)
    if fmt == "markdown":
        from orchestrator.render.text import render_markdown

        return render_markdown(doc, full=full)
    if fmt == "html":
        from orchestrator.render.html import render_html

        return render_html(doc, full=full)
    from orchestrator.render.text import render_text

    return render_text(doc, color=color, full=full)
