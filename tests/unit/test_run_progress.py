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


def test_tty_status_line_shows_agent_turn_tool_tokens_cost() -> None:
    out = io.StringIO()
    p = RunProgress(out, tty=True)
    _feed(p)
    status = out.getvalue().rsplit("\r\x1b[K", 1)[1]
    assert status.startswith("t1 impl t2 Bash pytest -q 1.8k tok $0.0123")
    p.finished("t1", SimpleNamespace(status="timeout", turns=2, tool_calls=1, tokens=1800,
                                     cost_usd=None, seconds=3.0, error="task timed out",
                                     ok=False), "failed")
    tail = out.getvalue().rsplit("\r\x1b[K", 1)[1]
    assert tail.startswith("[t1] timeout -> failed: 2 turns") and "$?" in tail
    assert "[t1]   task timed out" in tail
    assert p.live == {}


def test_event_line_ignores_uninteresting_events() -> None:
    assert event_line("agent.started", {}) is None
    assert event_line("tool.completed", {"is_error": False, "exit_code": 0,
                                         "duration_ms": 5}) == "    ok, exit 0 (5 ms)"
