"""RunProgress: plain lines off a terminal, one updating status line on one."""

from __future__ import annotations

import io
from types import SimpleNamespace

from orchestrator.progress import RunProgress, event_line


def _feed(p: RunProgress) -> None:
    p("t1", "task.dispatched", {"agent": "impl", "attempt": 1, "session_id": "s" * 20,
                                "workspace": {"branch": "orchestrail/r/t1"}})
    p("t1", "model.called", {"turn": 2, "model": "sonnet"})
    p("t1", "model.responded", {"usage": {"input_tokens": 1500, "output_tokens": 300},
                                "cost_usd": 0.0123})
    p("t1", "tool.requested", {"tool": "Bash", "input": {"command": "pytest -q"}})


def test_plain_lines_prefixed_with_the_task() -> None:
    out = io.StringIO()
    p = RunProgress(out, tty=False)
    _feed(p)
    p.finished("t1", SimpleNamespace(status="completed", turns=2, tool_calls=1, tokens=1800,
                                     cost_usd=0.0123, seconds=1.25, error=None, ok=True),
               "completed")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[t1] impl: dispatched (attempt 1, session sssssssssssss) orchestrail/r/t1"
    assert lines[1] == "[t1] turn 2: calling sonnet"
    assert lines[2] == "[t1]   Bash: pytest -q"
    assert lines[3] == "[t1] completed: 2 turns, 1 tool calls, 1.8k tokens, $0.0123, 1.2 s"
    assert "\r" not in out.getvalue()


def test_tty_status_block_one_line_per_running_task() -> None:
    out = io.StringIO()
    p = RunProgress(out, tty=True)
    _feed(p)
    p("t2", "task.dispatched", {"agent": "rev", "attempt": 1, "session_id": "x"})
    block = out.getvalue().rsplit("\x1b[J", 1)[1]
    lines = block.splitlines()
    assert lines[0] == "[t2] rev: dispatched (attempt 1, session x)"
    assert lines[1].startswith("t1 impl turn 2 Bash pytest -q 1.8k tok $0.0123 ")
    assert lines[2].startswith("t2 rev turn 0 0 tok $0.0000 ")
    p.finished("t1", SimpleNamespace(status="timeout", turns=2, tool_calls=1, tokens=1800,
                                     cost_usd=None, seconds=3.0, error="task timed out",
                                     ok=False), "failed")
    tail = out.getvalue().rsplit("\x1b[J", 1)[1].splitlines()
    assert tail[0].startswith("[t1] timeout -> failed: 2 turns") and "n/a" in tail[0]
    assert tail[1] == "[t1]   task timed out"
    assert tail[2].startswith("t2 rev") and len(tail) == 3
    assert "\x1b[2F\x1b[J" in out.getvalue()  # the two-line block was redrawn in place
    assert set(p.live) == {"t2"}


def test_event_line_ignores_uninteresting_events() -> None:
    assert event_line("agent.started", {}) is None
    assert event_line("tool.completed", {"is_error": False, "exit_code": 0,
                                         "duration_ms": 5}) == "    ok, exit 0 (5 ms)"
