"""When two executions of the same tool call count as the same: the rule ``rerun`` and
``diff`` share.

A tool call executed again for real never produces byte-identical output: pytest prints
its timing, a traceback shows a temp path, a scratch clone lives somewhere else. If every
byte counted, no rerun would ever match; if nothing but the request counted, a test that
now fails would go unnoticed as long as the model was served the same next turn. So:

* the **outcome** decides: the call's status (``ok`` / ``error`` / ``denied`` /
  ``pending``), its ``exit_code``, whether it ``timed_out``, and its ``error_kind``.
  Any of these differing is a divergence.
* the **output** is compared after ``normalise`` (workspace roots -> ``<workspace>``,
  durations -> ``<time>``, timestamps, ``/tmp`` paths and hex addresses replaced). A
  difference there is reported with a diff of the two outputs but is not a divergence,
  unless the caller asks for ``strict`` comparison.

Glob lists files newest first: the order follows modification times, which a scratch
clone does not keep (checkout writes every file within a few milliseconds, ties fall back
to the path), so its output lines are compared as a set (``ORDER_FREE``).

Changed file hashes (``files`` of Write/Edit) follow from the output rule: an Edit applied
to a file whose starting content changed leaves a different file, and the tests that read
it are what decide (their exit code).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.fold import ToolCall

_VOLATILE = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
     "<timestamp>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|secs|seconds|us|µs|ns)\b"), "<time>"),
    (re.compile(r"\b0x[0-9a-fA-F]{6,}\b"), "<addr>"),
    (re.compile(r"/tmp/[^\s'\":]+"), "<tmp>"),
]
#: lines of output diff shown per call
DIFF_LINES = 40
#: tools whose output order follows file modification times: lines compared as a set
ORDER_FREE = frozenset({"Glob"})


def normalise(text: str | None, roots: Sequence[str] = ()) -> str:
    """``text`` with what changes from one execution to the next replaced by a marker."""
    if not text:
        return ""
    for root in sorted((r for r in roots if r), key=len, reverse=True):
        text = text.replace(root, "<workspace>")
    for pattern, marker in _VOLATILE:
        text = pattern.sub(marker, text)
    return text


def outcome(call: ToolCall) -> dict[str, Any]:
    """What decides whether two executions of a call agree."""
    return {"status": call.status, "exit_code": call.exit_code, "timed_out": call.timed_out,
            "error_kind": call.error_kind}


def outcome_text(d: dict[str, Any]) -> str:
    """``ok, exit 0`` / ``error, exit 1, timed out``: an ``outcome`` dict for a person."""
    parts = [str(d.get("status"))]
    if d.get("exit_code") is not None:
        parts.append(f"exit {d['exit_code']}")
    if d.get("timed_out"):
        parts.append("timed out")
    if d.get("error_kind"):
        parts.append(str(d["error_kind"]))
    return ", ".join(parts)


def describe(call: ToolCall) -> dict[str, Any]:
    """A call for a report: outcome plus what was run and what it printed."""
    return {**outcome(call), "tool_use_id": call.tool_use_id, "tool": call.tool,
            "turn": call.turn, "input": call.input, "is_error": call.is_error,
            "reason": call.reason, "output": call.output, "output_sha256": call.output_sha256,
            "output_chars": call.output_chars, "position": call.position}


def input_key(call: ToolCall, roots: Sequence[str] = ()) -> str:
    """The call's identity for alignment: tool name and canonical, normalised input."""
    text = json.dumps(call.input, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return f"{call.tool}:{normalise(text, roots)}"


def output_diff(a: str | None, b: str | None, label_a: str = "recorded",
                label_b: str = "now") -> list[str]:
    lines = list(difflib.unified_diff((a or "").splitlines(), (b or "").splitlines(),
                                      label_a, label_b, n=1, lineterm=""))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more diff lines)"]
    return lines


def _comparable(call: ToolCall, roots: Sequence[str]) -> str:
    text = normalise(call.output, roots)
    return "\n".join(sorted(text.splitlines())) if call.tool in ORDER_FREE else text


def compare_calls(a: ToolCall, b: ToolCall, roots: Sequence[str] = (), *,
                  strict: bool = False, labels: tuple[str, str] = ("recorded", "now")
                  ) -> dict[str, Any] | None:
    """None when ``a`` and ``b`` agree; else ``{kind, divergent, fields, output_diff}``.

    ``kind`` is ``outcome`` (status, exit code, timeout or error kind differ: always
    divergent) or ``output`` (normalised outputs differ: divergent only when ``strict``).
    """
    oa, ob = outcome(a), outcome(b)
    fields = [k for k in oa if oa[k] != ob[k]]
    same_output = (a.output_sha256 is not None and a.output_sha256 == b.output_sha256) or \
        _comparable(a, roots) == _comparable(b, roots)
    if not fields and same_output:
        return None
    kind = "outcome" if fields else "output"
    return {"kind": kind, "divergent": bool(fields) or strict, "fields": fields,
            "output_diff": [] if same_output else output_diff(a.output, b.output, *labels)}
