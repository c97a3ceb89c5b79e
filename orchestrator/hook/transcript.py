"""Refused tool calls in a Claude Code transcript (stdlib only; read at Stop/SubagentStop).

In ``-p`` mode Claude Code runs PreToolUse, then refuses the call on its permission
rules without any further hook: the only trace is the transcript's ``tool_result`` with
``is_error: true`` and the refusal text. Only lines that contain an error result are
parsed, so a long transcript costs a substring scan, not a JSON parse per line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
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


#: Why a line is not a record (``parse_lines``); the import reports it with file and line.
NOT_A_RECORD = 'not a transcript record (a JSON object with a "type")'


def parse_lines(blob: bytes, loads: Callable[[bytes], Any],
                keep: Callable[[bytes], bool] | None = None
                ) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Each non-blank line of a transcript: ``(line number, record, None)``, or
    ``(line number, None, why not)`` for a line that is not a record (bad JSON, a partially
    written last line, not an object with a ``type``). ``keep(line) is False`` skips a line
    without parsing it (the hook's reconciliation reads only lines that can matter)."""
    lines = blob.split(b"\n")
    torn_tail = not blob.endswith(b"\n")
    last = len(lines)
    for n, line in enumerate(lines, 1):
        if not line or line.isspace() or (keep is not None and not keep(line)):
            continue
        try:
            rec = loads(line)
        except ValueError as exc:  # also UnicodeDecodeError and orjson.JSONDecodeError
            if n == last and torn_tail:
                yield n, None, f"partially written last line ({len(line)} bytes, no newline)"
            else:
                yield n, None, f"not valid JSON ({str(exc)[:120]})"
            continue
        if type(rec) is not dict or not isinstance(rec.get("type"), str):
            yield n, None, NOT_A_RECORD
            continue
        yield n, rec, None


def _may_matter(line: bytes) -> bool:
    return (b'"tool_use"' in line or b'"is_error":true' in line
            or b'"is_error": true' in line)


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
    for _, rec, _problem in parse_lines(blob, json.loads, _may_matter):
        if rec is None:
            continue  # a partially written last line, or a corrupted one
        msg = rec.get("message")
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
