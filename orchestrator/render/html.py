"""A single self-contained HTML page of a replayed run: inline CSS, no script, no network.

Every node is a ``<details>`` element, closed below the session level, so a run of
100,000 events opens as a short page and the browser lays out only what is expanded.
"""

from __future__ import annotations

import html
from typing import Any

from orchestrator.render.text import walk

#: Characters of one detail line shown without --full (keeps a 100k-event page small).
LIMIT = 1000

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222;background:#fff}
details{margin-left:1.2em;border-left:2px solid #ddd;padding-left:.6em}
summary{cursor:pointer;font-family:ui-monospace,monospace;white-space:pre-wrap}
.d{color:#555;font-family:ui-monospace,monospace;white-space:pre-wrap;margin:.1em 0 .1em 1.2em}
.ok,.completed{color:#17602a}.denied,.error,.failed{color:#b00020;font-weight:600}
.pending,.running,.incomplete{color:#8a6100}.retry{color:#7a2a8a}.dim{color:#777}
"""


def render_html(doc: dict[str, Any], *, full: bool = False) -> str:
    run = doc["run"]
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
           f"<title>Replay {html.escape(run['id'])}</title><style>{_CSS}</style></head><body>",
           f"<h1>Replay of run <code>{html.escape(run['id'])}</code></h1>"]
    depth_open: list[int] = []
    for depth, status, head, details in walk(doc, True):
        while depth_open and depth_open[-1] >= depth:
            depth_open.pop()
            out.append("</details>")
        opened = " open" if depth <= 1 else ""
        out.append(f"<details{opened}><summary class=\"{html.escape(status)}\">"
                   f"{html.escape(head)}</summary>")
        for d in details:
            text = d if full or len(d) <= LIMIT else d[:LIMIT] + f"… ({len(d):,} chars)"
            out.append(f"<div class=d>{html.escape(text)}</div>")
        depth_open.append(depth)
    out.extend("</details>" for _ in depth_open)
    out.append("</body></html>")
    return "\n".join(out)
