"""Refused tool calls in a Claude Code transcript (stdlib only; read at Stop/SubagentStop).

In ``-p`` mode Claude Code runs PreToolUse, then refuses the call on its permission
rules without any further hook: the only trace is the transcript's ``tool_result`` with
``is_error: true`` and the refusal text. Only lines that contain an error result are
parsed, so a long transcript costs a substring scan, not a JSON parse per line.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

#: Transcripts can be large; past this many bytes only the tail is scanned (a session's
#: refusals that matter at this Stop are recent ones; older ones were reconciled before).
MAX_SCAN_BYTES = 32 * 1024 * 1024


class RefusedCall(NamedTuple):
    tool_use_id: str
    tool: str | None
    input: Any
    reason: str


def text_of(content: Any) -> str:
    """The text of a message or tool_result ``content``: a string, or its text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content
                         if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def refused_calls(path: str) -> list[RefusedCall]:
    """Error tool_results in the transcript, with the tool_use they answer."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - MAX_SCAN_BYTES))
            blob = fh.read()
    except OSError:
        return []
    uses: dict[str, tuple[str | None, Any]] = {}
    errors: list[tuple[str, str]] = []
    for line in blob.splitlines():
        has_use = b'"tool_use"' in line
        has_err = b'"is_error":true' in line or b'"is_error": true' in line
        if not (has_use or has_err):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a partially written last line, or a corrupted one
        msg = rec.get("message") if isinstance(rec, dict) else None
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                uses[block["id"]] = (block.get("name"), block.get("input"))
            elif (block.get("type") == "tool_result" and block.get("is_error") is True
                  and isinstance(block.get("tool_use_id"), str)):
                errors.append((block["tool_use_id"], text_of(block.get("content"))))
    out: list[RefusedCall] = []
    for tuid, reason in errors:
        tool, tool_input = uses.get(tuid, (None, None))
        out.append(RefusedCall(tuid, tool, tool_input, reason or "refused by Claude Code"))
    return out
