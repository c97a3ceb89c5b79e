"""Live progress on stderr: what each session is doing, as it happens.

``event_line`` turns one session event into a short line (shared by ``agents run`` and
``run``). ``RunProgress`` follows a whole run: on a terminal it keeps a block of status
lines at the bottom, one per running task (agent, turn, current tool, tokens, cost,
seconds), redrawn in place, and prints a permanent line above it when a task is
dispatched or finishes; elsewhere (a log file, CI) it prints plain lines, one per event,
prefixed with the task id.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

#: Seconds between two redraws of the terminal status block.
REDRAW_S = 0.1


def event_line(kind: str, data: dict[str, Any]) -> str | None:
    """One short line for a session event, or None for events not worth a line."""
    if kind == "model.called":
        line = f"turn {data['turn']}: calling {data['model']}"
        if data.get("attempt", 1) > 1:
            line += f" (attempt {data['attempt']})"
    elif kind == "model.failed":
        retry = f", retrying in {data['delay_s']} s" if data.get("will_retry") else ""
        line = f"  model error: {data['error']}{retry}"
    elif kind == "tool.requested":
        line = f"  {data.get('tool')}: {tool_subject(data.get('input'))[:120]}"
    elif kind == "tool.denied":
        line = f"    denied: {data.get('reason')}"
    elif kind == "approval.requested":
        line = f"    asking: {data.get('reason')}"
    elif kind == "approval.resolved":
        line = f"    {'approved' if data.get('approved') else 'refused'}: {data.get('reason')}"
    elif kind == "tool.completed":
        status = "error" if data.get("is_error") else "ok"
        if data.get("exit_code") is not None:
            status += f", exit {data['exit_code']}"
        if data.get("timed_out"):
            status += ", timed out"
        line = f"    {status} ({data.get('duration_ms')} ms)"
    else:
        return None
    return line


def tool_subject(inp: Any) -> str:
    if isinstance(inp, dict):
        return str(inp.get("command") or inp.get("file_path") or inp.get("pattern")
                   or inp.get("subagent_type") or "")
    return ""


def human_tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def money(usd: float | None) -> str:
    return "n/a" if usd is None else f"${usd:.4f}" if usd < 1 else f"${usd:.2f}"


@dataclass
class _Live:
    agent: str
    attempt: int
    started: float
    turn: int = 0
    tool: str = ""
    tokens: int = 0
    cost: float = 0.0


class RunProgress:
    """Receives ``(task_id, event type, data)`` from the runner and the sessions."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 quiet: bool = False) -> None:
        self.out = stream or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.quiet = quiet
        self.live: dict[str, _Live] = {}
        self._drawn = 0  # status lines currently on screen (terminal only)
        self._drawn_at = 0.0
        self._deferred = False
        self._ticking = False

    # -- called by the runner and by sessions -------------------------------------------
    def __call__(self, task_id: str, kind: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        if kind == "task.dispatched":
            self.live[task_id] = _Live(str(data.get("agent")), int(data.get("attempt") or 1),
                                       time.monotonic())
            ws = (data.get("workspace") or {}).get("branch") or \
                (data.get("workspace") or {}).get("path") or ""
            self.line(f"[{task_id}] {data.get('agent')}: dispatched (attempt "
                      f"{data.get('attempt')}, session {str(data.get('session_id'))[:13]}) "
                      f"{ws}".rstrip())
            return
        live = self.live.get(task_id)
        if live is not None:
            if kind == "model.called":
                live.turn, live.tool = int(data.get("turn") or live.turn), "thinking"
            elif kind == "model.responded":
                usage = data.get("usage") or {}
                live.tokens += sum(v for v in usage.values() if isinstance(v, int))
                live.cost += float(data.get("cost_usd") or 0.0)
                live.tool = ""
            elif kind == "tool.requested":
                live.tool = f"{data.get('tool')} {tool_subject(data.get('input'))[:40]}"
        if self.tty:
            self.status()
        else:
            line = event_line(kind, data)
            if line is not None:
                self.line(f"[{task_id}] {line}")

    def finished(self, task_id: str, outcome: Any, action: str) -> None:
        """A permanent line for an attempt that ended (``action``: what the task became)."""
        self.live.pop(task_id, None)
        if self.quiet:
            return
        what = outcome.status if outcome.status == action else f"{outcome.status} -> {action}"
        detail = (f"{outcome.turns} turns, {outcome.tool_calls} tool calls, "
                  f"{human_tokens(outcome.tokens)} tokens, {money(outcome.cost_usd)}, "
                  f"{outcome.seconds:.1f} s")
        line = f"[{task_id}] {what}: {detail}"
        if outcome.error and not outcome.ok:
            line += f"\n[{task_id}]   {outcome.error}"
        self.line(line)

    def note(self, message: str) -> None:
        if not self.quiet:
            self.line(message)

    # -- output ------------------------------------------------------------------------
    def line(self, text: str) -> None:
        self._clear()
        print(text, file=self.out, flush=True)
        if self.tty:
            self.status(force=True)

    def status(self, force: bool = False) -> None:
        """Redraw the block of status lines (one per running task), at most every
        ``REDRAW_S`` unless forced; a skipped redraw is made up for shortly after."""
        now = time.monotonic()
        if not force and now - self._drawn_at < REDRAW_S:
            if not self._deferred:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    self._deferred = True
                    loop.call_later(REDRAW_S, self._redraw_deferred)
                    return
            else:
                return
        self._clear()
        width = shutil.get_terminal_size((100, 20)).columns - 1
        for tid, lv in self.live.items():
            text = " ".join(x for x in (
                tid, lv.agent, f"turn {lv.turn}", lv.tool, f"{human_tokens(lv.tokens)} tok",
                money(lv.cost), f"{now - lv.started:.0f}s") if x)
            self.out.write(text[:width] + "\n")
        self.out.flush()
        self._drawn = len(self.live)
        self._drawn_at = now
        if self.live and not self._ticking:  # keep the seconds moving during long tools
            try:
                asyncio.get_running_loop().call_later(1.0, self._tick)
                self._ticking = True
            except RuntimeError:
                pass

    def _tick(self) -> None:
        self._ticking = False
        if self.live:
            self.status(force=True)

    def _redraw_deferred(self) -> None:
        self._deferred = False
        self.status(force=True)

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
