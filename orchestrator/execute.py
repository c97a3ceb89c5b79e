"""One attempt at one task: workspace, ``task.dispatched``, the agent session, the diff.

Shared by every way orchestrail works a backlog: the fixed dispatcher (``orchestrail
run``, ``orchestrator.runner``), ``orchestrail worker`` (which holds a lease and passes a
``heartbeat``), and ``resume``. The caller has already claimed the task; afterwards it
settles it (``settle``: complete, fail with or without retry, or release). Keeping claim
and settle outside lets a worker decide about leases and a lead/reviewer decide about
acceptance without touching this code.

Everything this writes is an event, in this order: ``task.dispatched`` (stream
``run-<run_id>``), the session's events (``session-<id>``, caused by the dispatch), then
``workspace.diff`` (same session stream). Nothing lives only in memory: a run's state is a
fold over those events, which is what ``resume`` rebuilds from.

Stopping an attempt early goes through ``Cancel`` (Ctrl-C, a run budget, a lost lease) or
the task timeout; the session then ends with ``agent.failed`` whose ``status`` says why
(``cancelled``, ``timeout``, ``lease_lost``) and the outcome carries the same status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agents.approval import Approver
    from agents.definition import AgentDefinition
    from agents.discovery import AgentRegistry
    from agents.loop import Budgets, RetryPolicy
    from agents.models import ModelCatalog
    from eventstore.base import EventStore
    from orchestrator.backlog import Backlog, TaskState
    from orchestrator.workspace import Workspace, Workspaces

#: Session statuses that mean "stopped from outside, not the task's fault": the task is
#: released (back to open), not failed.
RELEASED = ("cancelled", "lease_lost")
#: ``error_kind`` values of a failed session that a new attempt may fix.
TRANSIENT_KINDS = ("provider_transient",)
FINAL_TEXT_CAP = 4000

ProgressFn = Callable[[str, str, dict[str, Any]], None]  # (task_id, event type, data)
Heartbeat = Callable[[], Awaitable[None]]


class ProviderFactory(Protocol):
    """Makes (or hands out) the model provider for one attempt; called before dispatch."""

    def __call__(self, task: TaskState, definition: AgentDefinition) -> Any: ...


class Cancel:
    """A handle to stop one attempt with a recorded reason (Ctrl-C, a lost lease...)."""

    def __init__(self) -> None:
        self.status = "cancelled"
        self.reason = ""
        self._event = asyncio.Event()

    def cancel(self, status: str = "cancelled", reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.status, self.reason = status, reason
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


@dataclass
class ExecConfig:
    """What every attempt of a run shares."""

    store: EventStore
    run_id: str
    project: Path
    agents: AgentRegistry
    workspaces: Workspaces
    provider_name: str
    providers: ProviderFactory
    catalog: ModelCatalog
    budgets: Budgets
    model: str | None = None
    timeout: float | None = None
    retry: RetryPolicy | None = None  # model-call retries inside a session
    approver: Approver | None = None
    record_prompts: bool = False
    pass_env: Sequence[str] = ()
    on_progress: ProgressFn | None = None
    config: Any = None  # eventstore Config, for the claude-code runner
    actor: str = "orchestrator"


@dataclass
class TaskOutcome:
    """How one attempt ended. ``status`` is the session's (``completed``, ``failed``,
    ``refused``, ``budget_exceeded:<kind>``) or the reason it was stopped (``timeout``,
    ``cancelled``, ``lease_lost``)."""

    task_id: str
    attempt: int
    session_id: str | None
    status: str
    error: str | None = None
    error_kind: str | None = None
    final_text: str = ""
    turns: int = 0
    tool_calls: int = 0
    denials: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    dispatched_id: str | None = None
    workspace: dict[str, Any] | None = None
    diff: dict[str, Any] | None = None
    session_seconds: float = 0.0  # time inside the agent session itself
    seconds: float = 0.0  # the whole attempt
    #: the reviewer's verdict on this attempt (``orchestrator.review``), when there is one
    review: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def transient(self) -> bool:
        """A new attempt might succeed (a provider that kept failing transiently)."""
        return self.status == "failed" and self.error_kind in TRANSIENT_KINDS

    @property
    def released(self) -> bool:
        return self.status in RELEASED

    @property
    def tokens(self) -> int:
        return sum(v for v in self.usage.values() if isinstance(v, int))

    def reason(self) -> str:
        """Why it did not complete, starting with the status: ``timeout: task timed out
        after 5 s``, ``failed: model call failed: ...``."""
        why = self.error or self.status
        return why if why.startswith(self.status) else f"{self.status}: {why}"

    def summary(self) -> dict[str, Any]:
        """What goes into ``task.completed``'s ``result`` (the session holds the rest)."""
        out: dict[str, Any] = {
            "session_id": self.session_id, "status": self.status, "attempt": self.attempt,
            "final_text": self.final_text[:FINAL_TEXT_CAP], "turns": self.turns,
            "tool_calls": self.tool_calls, "denials": self.denials, "usage": self.usage,
            "cost_usd": self.cost_usd}
        if self.workspace:
            out["branch"] = self.workspace.get("branch")
            out["workspace"] = self.workspace.get("path")
        if self.diff:
            out["commit"] = self.diff.get("commit")
            out["files"] = [f["path"] for f in self.diff.get("files", [])]
        if self.review:
            out["review"] = self.review
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "task_id": self.task_id, "error": self.error,
                "error_kind": self.error_kind, "seconds": round(self.seconds, 3)}


def task_prompt(task: TaskState, prompt: str | None = None) -> str:
    """The task's prompt (or ``prompt``, a lead's wording of it), with its acceptance
    criteria when the prompt does not already quote them (story imports do; YAML tasks
    keep them apart), and the feedback of a review that rejected the previous attempt."""
    prompt = prompt or task.prompt or task.title
    criteria = [c for c in task.acceptance_criteria if c not in prompt]
    if criteria:
        prompt += "\n\nAcceptance criteria:\n" + "\n".join(f"- {c}" for c in criteria)
    review = task.review
    if isinstance(review, dict) and review.get("verdict") != "accept":
        feedback = review.get("feedback") or review.get("reason")
        prompt += (f"\n\nA reviewer rejected the previous attempt (attempt "
                   f"{review.get('attempt')}). Their feedback:\n{feedback}\n"
                   "Address it in this attempt.")
    return prompt


@dataclass(frozen=True)
class Dispatch:
    """How a lead agent's ``Agent`` call dispatched the attempt (``orchestrator.lead``):
    the agent it chose, its prompt, the ``tool.requested`` event that caused the dispatch,
    the lead's session (the child's parent), the child's depth and its own delegate."""

    agent: str
    prompt: str
    causation_id: str | None
    parent_session: str
    depth: int = 1
    max_depth: int = 2
    delegate: Any = None
    tool_use_id: str = ""


def _new_id() -> str:
    from eventstore.canonical import uuid7

    return str(uuid7())


async def execute_task(task: TaskState, attempt: int, cfg: ExecConfig, *,
                       cancel: Cancel | None = None, heartbeat: Heartbeat | None = None,
                       heartbeat_every: float = 60.0, fresh_workspace: bool = True,
                       session_id: str | None = None, via: Dispatch | None = None
                       ) -> TaskOutcome:
    """Run one attempt of ``task`` (already claimed by the caller) and return how it ended.

    ``heartbeat`` is awaited every ``heartbeat_every`` seconds while the session runs (a
    worker renews its lease there); if it raises, the attempt is stopped with status
    ``lease_lost``. Store errors propagate (the caller decides what a dead store means);
    everything else ends as an outcome.
    """
    from eventstore.model import NewEvent
    from orchestrator.workspace import WorkspaceError

    t0 = time.monotonic()
    session_id = session_id or _new_id()
    out = TaskOutcome(task.id, attempt, session_id, "failed")
    try:
        agent = via.agent if via is not None else task.agent
        if agent is None:
            raise LookupError(f"task {task.id!r} names no agent (a lead agent would route it)")
        definition = cfg.agents.get(agent)
        provider = None if cfg.provider_name == "claude-code" else \
            cfg.providers(task, definition)
        ws = await cfg.workspaces.prepare(task.id, task.depends_on, fresh=fresh_workspace)
    except (WorkspaceError, LookupError) as exc:
        out.error, out.error_kind = str(exc), "setup"
        out.session_id = None
        out.seconds = time.monotonic() - t0
        return out
    except Exception as exc:
        from agents.errors import AgentError
        from agents.providers.base import ProviderError

        if not isinstance(exc, AgentError | ProviderError):
            raise
        out.error, out.error_kind, out.session_id = str(exc), "setup", None
        out.seconds = time.monotonic() - t0
        return out
    out.workspace = ws.to_dict()
    model = cfg.catalog.resolve(cfg.model or definition.model, cfg.provider_name)
    dispatched = NewEvent(
        type="task.dispatched", actor=cfg.actor, correlation_id=cfg.run_id,
        data={"task_id": task.id, "agent": definition.name, "session_id": session_id,
              "attempt": attempt, "provider": cfg.provider_name, "model": model,
              "definition_hash": definition.definition_hash, "workspace": out.workspace,
              **({"routed_by": "lead", "parent_session": via.parent_session,
                  "tool_use_id": via.tool_use_id, "depth": via.depth}
                 if via is not None else {})},
        causation_id=via.causation_id if via is not None else None)
    await cfg.store.append(f"run-{cfg.run_id}", [dispatched])
    out.dispatched_id = dispatched.id
    _progress(cfg, task.id, "task.dispatched", dispatched.data)

    session: Any = None
    if cfg.provider_name == "claude-code":
        runner = _claude_code(cfg, definition, task, ws, model, session_id, dispatched.id,
                              task_prompt(task, via.prompt if via is not None else None))
        stop_as: Callable[[str, str], None] = lambda status, reason: None  # noqa: E731
    else:
        session = _session(cfg, definition, task, ws, model, session_id, dispatched.id, via,
                           provider=provider)
        runner = session.run()

        def stop_as(status: str, reason: str) -> None:
            session.cancelled_as = (status, reason)

    s0 = time.monotonic()
    result, stopped = await supervise(runner, stop_as, cfg.timeout, cancel, heartbeat,
                                      heartbeat_every)
    out.session_seconds = time.monotonic() - s0
    if stopped is not None:
        out.status, out.error = stopped
        out.error_kind = out.status
        if session is not None:  # what the stopped session got done
            out.turns, out.tool_calls, out.denials = (session.turns, session.tool_calls,
                                                      session.denials)
            out.usage = dict(session.usage)
            out.cost_usd = None if session.unpriced else session.cost
    if result is not None:
        fill_outcome(out, result)
    out.diff = await record_diff(cfg, ws, task, out, dispatched.id)
    out.seconds = time.monotonic() - t0
    return out


def fill_outcome(out: TaskOutcome, result: Any) -> None:
    """Copy a SessionResult (native loop) or ClaudeCodeResult into the outcome: how a
    session that ended by itself ended (``execute_task``, and ``resume`` for a session it
    continued)."""
    out.status = str(result.status)
    out.error = result.error
    out.error_kind = getattr(result, "error_kind", None)
    out.final_text = result.final_text or ""
    out.turns = int(result.turns)
    out.tool_calls, out.denials = int(result.tool_calls), int(result.denials)
    usage = result.usage
    out.usage = dict(usage) if isinstance(usage, Mapping) else usage.model_dump()
    out.cost_usd = result.cost_usd


async def supervise(runner: Awaitable[Any], stop_as: Callable[[str, str], None],
                    timeout: float | None, cancel: Cancel | None,
                    heartbeat: Heartbeat | None, every: float
                    ) -> tuple[Any, tuple[str, str] | None]:
    """Await a session (``runner``: its ``run()`` coroutine); stop it on ``timeout``,
    ``cancel`` or a failing ``heartbeat``. Shared by every session a run starts: a task's
    attempt (``execute_task``), a resumed one (``resume``), the lead's and a reviewer's.

    Returns ``(result, None)`` when it ended by itself, ``(None, (status, reason))`` when
    it was stopped: ``stop_as(status, reason)`` is called first, so its ``agent.failed``
    records that status. When the caller itself is cancelled, the session is stopped as
    ``cancelled`` and ``CancelledError`` propagates, but only once the session has
    recorded its end: a session is never left half-stopped, and the caller's cancellation
    is never swallowed, also when both happen at the same moment."""
    me = asyncio.current_task()
    base = me.cancelling() if me is not None else 0  # cancellations of the caller so far
    session_task = asyncio.ensure_future(runner)
    helpers: list[asyncio.Future[Any]] = []
    cancel_wait = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    if cancel_wait is not None:
        helpers.append(cancel_wait)
    renewals: list[asyncio.Future[Any]] = []
    beat = asyncio.ensure_future(_beat(heartbeat, every, renewals)) \
        if heartbeat is not None else None
    if beat is not None:
        helpers.append(beat)
    stopped: tuple[str, str] | None = None
    try:
        done, _ = await asyncio.wait({session_task, *helpers}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if session_task in done:
            if session_task.cancelled():  # it stopped itself as cancelled (a tool's stop)
                why = cancel.reason if cancel is not None and cancel.requested else \
                    "the session was cancelled"
                return None, ("cancelled", why)
            return session_task.result(), None
        if cancel_wait is not None and cancel_wait in done and cancel is not None:
            stopped = (cancel.status, cancel.reason)
        elif beat is not None and beat in done:
            exc = beat.exception()
            stopped = ("lease_lost", f"lease lost: {exc}" if exc else "lease lost")
        else:
            stopped = ("timeout", f"task timed out after {timeout:g} s")
        stop_as(*stopped)
        session_task.cancel()
        await _stopped(session_task, base)
        return None, stopped
    finally:
        for h in helpers:
            h.cancel()
        for call in renewals:  # let a renewal in flight land before the caller settles
            if not call.done():
                with contextlib.suppress(Exception):
                    await call
        if not session_task.done():  # we ourselves were cancelled: stop the session too
            stop_as("cancelled", "the attempt was cancelled")
            session_task.cancel()
            await _stopped(session_task, base)


async def _stopped(session_task: asyncio.Future[Any], base: int) -> None:
    """Wait until a session we cancelled has ended (its ``agent.failed`` recorded).

    The wait is shielded: a cancellation of the caller meanwhile must not reach the
    session a second time (that would cut its ``agent.failed`` short), and it must not be
    lost either: it is held back and re-raised once the session has ended. The session's
    own ``CancelledError`` (the stop we asked for) is its normal ending. ``base``: how
    many cancellations the caller had pending when it started the session."""
    me = asyncio.current_task()
    while not session_task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(session_task)
    if me is not None and me.cancelling() > base:
        if not session_task.cancelled():
            session_task.exception()  # retrieved: the caller's cancellation wins
        raise asyncio.CancelledError
    failure = None if session_task.cancelled() else session_task.exception()
    if failure is not None:  # e.g. the store failed while it recorded its end
        raise failure


async def _beat(heartbeat: Heartbeat, every: float,
                renewals: list[asyncio.Future[Any]]) -> None:
    """Call ``heartbeat`` every ``every`` seconds. Each call is shielded: cancelling a
    store append does not undo a COMMIT already sent, so a renewal cut off when the
    session ends could still land after the caller read the task's version, and the
    caller's own completion would then fail on the version check. ``supervise`` waits
    for the last call instead."""
    while True:
        await asyncio.sleep(every)
        call = asyncio.ensure_future(heartbeat())
        renewals[:] = [call]
        await asyncio.shield(call)


def _progress(cfg: ExecConfig, task_id: str, kind: str, data: dict[str, Any]) -> None:
    if cfg.on_progress is not None:
        cfg.on_progress(task_id, kind, data)


def _env(cfg: ExecConfig, ws: Workspace, session_id: str) -> dict[str, str]:
    from agents.tools import minimal_env

    env = minimal_env(str(ws.path), session_id)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for var in cfg.pass_env:
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def _session(cfg: ExecConfig, definition: AgentDefinition, task: TaskState, ws: Workspace,
             model: str, session_id: str, causation: str, via: Dispatch | None = None,
             *, provider: Any = None) -> Any:
    from dataclasses import replace

    from agents.approval import DenyApprover
    from agents.loop import AgentSession
    from agents.permissions import PermissionEngine, load_settings

    settings = load_settings(ws.path)
    engine = PermissionEngine.for_agent(definition, ws.path, rules=settings.rules,
                                        additional_dirs=settings.additional_directories)
    budgets = cfg.budgets
    if budgets.max_turns is None and definition.max_turns:
        budgets = replace(budgets, max_turns=definition.max_turns)

    if provider is None:
        provider = cfg.providers(task, definition)

    def progress(kind: str, data: dict[str, Any]) -> None:
        _progress(cfg, task.id, kind, data)

    return AgentSession(
        definition, task_prompt(task, via.prompt if via is not None else None),
        provider=provider, store=cfg.store,
        workspace=ws.path, model=model, provider_name=cfg.provider_name,
        session_id=session_id, run_id=cfg.run_id, causation_id=causation, budgets=budgets,
        retry=cfg.retry, engine=engine, approver=cfg.approver or DenyApprover(
            "orchestrail run is unattended (give --policy FILE to approve 'ask' rules)"),
        cost_fn=cfg.catalog.cost, record_prompts=cfg.record_prompts,
        env=_env(cfg, ws, session_id), on_progress=progress,
        parent_session=via.parent_session if via is not None else None,
        depth=via.depth if via is not None else 0,
        max_depth=via.max_depth if via is not None else 2,
        delegate=via.delegate if via is not None else None)


async def _claude_code(cfg: ExecConfig, definition: AgentDefinition, task: TaskState,
                       ws: Workspace, model: str, session_id: str, causation: str,
                       prompt: str) -> Any:
    from agents.providers import get_provider

    runner = get_provider("claude-code", cfg.store, config=cfg.config, timeout=None)
    return await runner.run(definition, prompt, workspace=ws.path,
                            run_id=cfg.run_id, session_id=session_id, causation_id=causation)


async def record_diff(cfg: ExecConfig, ws: Workspace, task: TaskState, out: TaskOutcome,
                      causation: str) -> dict[str, Any] | None:
    """Commit what the session left on the task's branch and record ``workspace.diff`` on
    the session's stream (caused by ``causation``); returns the diff without its patch.
    After every attempt (``execute_task``), and by ``resume`` for a session it continued
    or one that ended just before the crash without its diff."""
    from eventstore.model import NewEvent
    from orchestrator.workspace import WorkspaceError

    if ws.kind == "none" and not cfg.workspaces.git:
        return None
    try:
        diff = await ws.collect(f"orchestrail: {task.id} ({out.status}, attempt "
                                f"{out.attempt}, session {out.session_id})")
    except (WorkspaceError, OSError) as exc:
        diff = {"error": str(exc), "files": []}
    await cfg.store.append(f"session-{out.session_id}", [NewEvent(
        type="workspace.diff", actor=cfg.actor, correlation_id=cfg.run_id,
        causation_id=causation,
        data={"task_id": task.id, "session_id": out.session_id, "attempt": out.attempt,
              **(out.workspace or {}), **diff})])
    return {k: v for k, v in diff.items() if k != "patch"}



async def settle(backlog: Backlog, outcome: TaskOutcome, worker: str, *,
                 retry: bool = False) -> str:
    """Record the outcome on the task's stream: ``completed``, ``released`` (stopped from
    outside), or ``failed`` (``retry=True`` puts it back to open for another attempt).
    Returns which of the three it was."""
    if outcome.ok:
        await backlog.complete(outcome.task_id, outcome.summary(), worker=worker)
        return "completed"
    if outcome.released:
        from orchestrator.backlog import ClaimLost

        try:
            await backlog.release(outcome.task_id, worker, reason=outcome.reason())
        except ClaimLost:  # the lease ran out and another worker holds the task now
            pass
        return "released"
    await backlog.fail(outcome.task_id, outcome.reason(), worker=worker, retry=retry,
                       review=outcome.review)
    return "failed"
