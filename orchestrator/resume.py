"""``orchestrail resume RUN``: finish a run that crashed (SIGKILL, power loss, OOM) or was
stopped (Ctrl-C), from its events alone.

The run is folded (``orchestrator.fold``, the same fold as replay and audit) and each
piece is treated by what the trail says about it:

* a task that is completed (or failed for good) is left alone;
* a task whose session was in flight (dispatched, started, no ``agent.finished``; or
  stopped by Ctrl-C, ``agent.failed`` with status ``cancelled``) has that session resumed
  in its own workspace (``agents.resume``): recorded model turns are not asked again,
  recorded tool calls are not run again, a tool call that was running when the process
  died is recorded as interrupted and not run again (see ``agents/resume.py``);
* a task that was not started is dispatched as normal.

A run recorded without a run stream (``orchestrail agents run``: the run is one session)
is resumed at the session level only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.runner import Runner, RunReport

if TYPE_CHECKING:
    from agents.approval import Approver
    from agents.definition import AgentDefinition
    from agents.loop import AgentSession
    from agents.resume import SessionLog
    from eventstore.base import EventStore
    from orchestrator.fold import RunState

ProgressFn = Callable[[str, dict[str, Any]], None]


class ResumeRunError(Exception):
    """The run cannot be resumed as asked; the message says why and what to do instead."""


@dataclass
class SessionPlan:
    """One session of the run and what resume does with it."""

    session_id: str
    task_id: str | None
    agent: str | None
    status: str  # as folded: running, pending, cancelled, completed ...
    action: str  # resume | done | skip
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "task_id": self.task_id, "agent": self.agent,
                "status": self.status, "action": self.action, "reason": self.reason}


@dataclass
class Plan:
    run_id: str
    status: str  # the run's status as folded
    finished: bool
    has_run_stream: bool
    sessions: list[SessionPlan] = field(default_factory=list)

    def to_resume(self) -> list[SessionPlan]:
        return [s for s in self.sessions if s.action == "resume"]


def plan(state: RunState) -> Plan:
    """What resuming ``state`` would do, without doing it.

    In a run led by a lead agent (``state.lead``) the lead's session is resumed and so is
    every delegated sub-session in flight: the resumed parent continues the ``Agent`` call
    that started it (``orchestrator.lead``), which resumes it. Elsewhere a sub-session's
    parent records its call as interrupted and the sub-session is closed."""
    from agents.resume import RESUMABLE_FAILURES

    p = Plan(state.run_id, state.derived_status(), state.finished_at is not None,
             state.has_run_stream)
    led = state.lead is not None
    for s in state.sessions.values():
        role = getattr(s, "started_data", {}).get("role")
        in_flight = (s.status in ("running", "pending") and s.started_at is not None) \
            or s.status in RESUMABLE_FAILURES
        if role == "reviewer":
            action, why = "skip", "a review: asked again when its task is settled"
        elif s.parent_session and not led:
            action, why = "skip", "a delegated sub-session: its parent's Agent call decides"
        elif led and in_flight and (role == "lead" or s.parent_session):
            action, why = "resume", ("the lead, in flight when the run stopped"
                                     if role == "lead" else "in flight: its parent's "
                                     "resumed Agent call continues it")
        elif s.status in ("running", "pending") and s.started_at is not None:
            action, why = "resume", "in flight when the run stopped"
        elif s.status in RESUMABLE_FAILURES:
            action, why = "resume", f"stopped ({s.status})"
        elif s.started_at is None:
            action, why = "skip", "dispatched but never started: the task is dispatched again"
        else:
            action, why = "done", f"ended: {s.status}"
        p.sessions.append(SessionPlan(s.id, s.task_id, s.agent, s.status, action, why))
    return p


def bash_env(workspace: Path, session_id: str, pass_env: tuple[str, ...] = ()) -> dict[str, str]:
    """The Bash tool's environment, as ``agents run`` and ``run`` give it."""
    from agents.tools import minimal_env

    env = minimal_env(str(workspace), session_id)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for var in pass_env:
        if var in os.environ:
            env[var] = os.environ[var]
    return env


def resumed_session(store: EventStore, log: SessionLog, definition: AgentDefinition,
                    provider: Any, *, provider_name: str, workspace: Path | None = None,
                    model: str | None = None, approver: Approver | None = None,
                    cost_fn: Any = None, record_prompts: bool = False,
                    pass_env: tuple[str, ...] = (), on_progress: ProgressFn | None = None,
                    retry: Any = None, delegate: Any = None, max_depth: int = 2
                    ) -> AgentSession:
    """An ``AgentSession`` set up to continue ``log`` (``await s.run(resume=log)``): same
    session id, run, causation, workspace, permission mode, depth and budgets as
    recorded. With ``delegate`` (a lead run's, ``orchestrator.lead``), its ``Agent``
    calls go there, and one the crash left running is continued, not interrupted."""
    from agents.approval import DenyApprover
    from agents.loop import AgentSession, Budgets
    from agents.permissions import PermissionEngine, load_settings
    from agents.resume import ResumeError

    ws = workspace or (Path(log.workspace) if log.workspace else None)
    if ws is None or not ws.is_dir():
        raise ResumeError(f"{log.stream}: its workspace {log.workspace!r} is gone; the "
                          "session cannot continue where it stopped")
    settings = load_settings(ws)
    mode = log.started.get("permission_mode")
    engine = PermissionEngine.for_agent(
        definition, ws, rules=settings.rules, mode=mode if isinstance(mode, str) else None,
        additional_dirs=settings.additional_directories)
    recorded = log.started.get("budgets")
    known = {"max_turns", "max_tokens", "max_cost_usd", "max_wall_seconds"}
    budgets = Budgets(**{k: v for k, v in (recorded if isinstance(recorded, dict) else {}
                                           ).items() if k in known})
    parent = log.started.get("parent_session")
    depth = log.started.get("depth")
    session = AgentSession(
        definition, log.prompt, provider=provider, store=store, workspace=ws,
        model=model or str(log.started.get("model") or definition.model),
        provider_name=provider_name, session_id=log.session_id, run_id=log.run_id,
        causation_id=log.causation_id, parent_session=parent if isinstance(parent, str)
        else None, budgets=budgets, retry=retry, engine=engine,
        approver=approver or DenyApprover("a resumed session is unattended (give --policy "
                                          "FILE to approve 'ask' rules)"),
        cost_fn=cost_fn, record_prompts=record_prompts,
        env=bash_env(ws, log.session_id, pass_env), on_progress=on_progress,
        depth=depth if isinstance(depth, int) else 0, max_depth=max_depth, delegate=delegate)
    session.continues_delegations = delegate is not None
    return session


def process_alive(started: dict[str, Any]) -> bool:
    """Is the process that recorded ``run.started`` still running here? (Same host, its
    pid alive and an orchestrail command.) Resuming a live run would race it."""
    pid = started.get("pid")
    if started.get("host") != socket.gethostname() or not isinstance(pid, int) \
            or pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"orchestrail" in cmdline


def run_config(started: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """The recorded ``RunConfig`` of a run, with the caller's overrides."""
    from dataclasses import fields

    from orchestrator.runner import RunConfig

    recorded = started.get("config")
    if not isinstance(recorded, dict) or not recorded.get("project"):
        raise ResumeRunError("run.started records no configuration (project, provider...); "
                             "this run was not started by `orchestrail run`")
    known = {f.name for f in fields(RunConfig)}
    d = {k: v for k, v in recorded.items() if k in known}
    d.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("project", "script", "policy"):
        if d.get(key) is not None:
            d[key] = Path(d[key])
    d["only"] = tuple(d.get("only") or ())
    d["pass_env"] = tuple(d.get("pass_env") or ())
    return RunConfig(**d)


class ResumeRunner(Runner):
    """The ``orchestrail run`` dispatcher, continuing a recorded run instead of starting
    one: ``run.resumed`` instead of ``run.started``; the tasks the crashed process held
    taken over (same worker id, the run id, or an expired lease), their sessions resumed;
    then the normal dispatch of what is left, and ``run.finished``."""

    def __init__(self, store: EventStore, state: RunState, overrides: dict[str, Any], *,
                 progress: Any = None, app_config: Any = None) -> None:
        config = run_config(state.config, {**overrides, "run_id": state.run_id})
        super().__init__(store, config, progress=progress, app_config=app_config)
        self.state = state
        self.plan = plan(state)
        #: (task, how, session id): how = resume | settle | attempt
        self.takeover: list[tuple[Any, str, str | None]] = []
        self.skipped: dict[str, str] = {}
        self._resumed_data: dict[str, Any] = {"dispatch": []}
        #: sessions that were running and will not be continued -> why (closed as abandoned)
        self.abandon: dict[str, str] = {}
        self._run_head: int | None = None  # the run stream's version when prepare() began
        #: a lead run: the run's tasks not settled yet (the lead's calls settle them), and
        #: each Agent call (its session, its tool_use_id) -> (task id, its last session),
        #: from task.dispatched (a script's tool_use_ids repeat across sessions)
        self._unsettled: set[str] = set()
        self._calls: dict[tuple[str, str], tuple[str, str]] = {}
        #: (task id, attempt's session id) -> the ``review.completed`` recorded for it
        self._reviews: dict[tuple[str, str], dict[str, Any]] = {}
        self._adhoc: set[str] = set()
        self._lead_session: str | None = None  # None: the lead never started; start one
        self._lead_data: dict[str, Any] = {}
        #: a lead run: what resume found for each unsettled task the lead's calls will
        #: finish (``run.resumed``'s ``takeover``; nothing here runs on its own)
        self.lead_takeover: list[dict[str, Any]] = []

    async def prepare(self) -> None:
        from agents.discovery import load_agents
        from orchestrator.backlog import Backlog, TaskNotFound
        from orchestrator.runner import RunInputError

        cfg, state = self.config, self.state
        # the run stream's head as this resumer found it: ``run.resumed`` is appended only
        # if nothing came after, so of two resumers that prepared at once exactly one wins
        # (read at claim time, a slower claimer saw the winner's events as the head and won too)
        self._run_head = await self.store.stream_version(f"run-{self.run_id}")
        led = cfg.lead is not None
        if led and cfg.provider == "claude-code":
            raise ResumeRunError(f"run {self.run_id} was led by a lead agent; a lead needs "
                                 "the native agent loop, not --provider claude-code")
        if not cfg.project.is_dir():
            raise RunInputError([f"run {self.run_id}: its project directory {cfg.project} "
                                 "is gone"], code=1)
        self.backlog = backlog = await Backlog.load(self.store, correlation_id=self.run_id)
        self.agents = load_agents(cfg.project)
        sessions = {p.session_id: p for p in self.plan.sessions}
        now = _now()
        ids = [t for t in state.config.get("tasks") or [] if isinstance(t, str)]
        ids += [t for t in state.tasks if t not in ids]
        dead: dict[str, str] = {}
        dispatch: list[Any] = []
        worker_run = state.config.get("kind") == "worker"
        for tid in ids:
            try:
                t = backlog.get(tid)
            except TaskNotFound:
                self.skipped[tid] = "not in the backlog"
                continue
            folded = state.tasks.get(tid)
            last = sessions.get(folded.sessions[-1]) if folded and folded.sessions else None
            if t.status == "completed":
                self.report.completed.append(tid)
                continue
            if t.status in ("failed", "cancelled"):
                self.report.failed[tid] = t.error or t.status
                continue
            ours = t.status == "claimed" and (t.worker == self.run_id or t.lease_expired(now))
            if t.status == "claimed" and not ours:
                self.report.released[tid] = (f"claimed by {t.worker} until "
                                             f"{t.lease_until:%H:%M:%S} (not this run's)"
                                             if t.lease_until else f"claimed by {t.worker}")
                continue
            if led:
                self._unsettled.add(tid)
                continue
            if last is not None and last.action == "resume" and cfg.provider != "claude-code":
                self.takeover.append((t, "resume", last.session_id))
            elif ours and last is not None and last.action == "done" \
                    and state.sessions[last.session_id].task_id == tid:
                self.takeover.append((t, "settle", last.session_id))
            elif ours or (last is not None and last.action == "resume"):
                # claimed, nothing started (or only dispatched), or a claude-code session
                # (the claude binary keeps its own state; it cannot be continued here):
                # a new attempt
                self.takeover.append((t, "attempt", last.session_id if last else None))
            elif worker_run:  # a worker's run only ever worked what it had claimed
                continue
            else:
                why = self._dead(backlog, t, set(ids), dead)
                if why:
                    dead[tid] = why
                    self.report.blocked[tid] = why
                    continue
                dispatch.append(t)
        self.tasks = [t for t, _, _ in self.takeover] + dispatch
        resumed = {sid for _, how, sid in self.takeover if how == "resume"}
        if led:
            await self._prepare_lead(ids)
            resumed = {sp.session_id for sp in self.plan.sessions if sp.action == "resume"}
        for sp in self.plan.sessions:  # started, unfinished, and nobody will continue it
            if sp.session_id not in resumed \
                    and state.sessions[sp.session_id].started_at is not None \
                    and sp.status in ("running", "pending", "cancelled"):
                self.abandon[sp.session_id] = (
                    "a review in flight when the run stopped; it is asked again"
                    if sp.reason.startswith("a review") else
                    "in flight when the run stopped; not continued ("
                    + (sp.reason if sp.action == "skip" else "its task gets a new attempt")
                    + ")")
        problems: list[str] = []
        for t in self.tasks:
            if t.agent is not None and t.agent not in self.agents:
                problems.append(f"task {t.id!r}: unknown agent {t.agent!r} (known: "
                                f"{', '.join(self.agents.names()) or 'none'})")
        providers = self._providers(problems)
        from orchestrator.roles import prepare_roles

        install_roles = prepare_roles(self, problems)  # --review, as the run had it
        if problems:
            raise RunInputError(problems)
        git = state.config.get("git")
        self._git = git if isinstance(git, dict) else None
        self.exec = await self.build_exec(
            self.agents, providers,
            workspace_mode=str(state.config.get("workspace_mode") or cfg.workspace))
        install_roles()
        await self._read_run_stream()
        if self.reviewer is not None and self._reviews:
            self.reviewer = RecordedReviews(self.reviewer, self._reviews)
        self.pending = {t.id for t in self.tasks} if not led else set(self._unsettled)
        if led:
            self._install_lead()
        stopping = [o for o in state.other if o.get("type") == "run.stopping"]
        if stopping:  # a run budget had stopped the dispatching: it still does
            d = stopping[-1].get("data") or {}
            self._stop = (str(d.get("status") or "stopped"), str(d.get("reason") or ""))
        taken = {sid for _, _, sid in self.takeover if sid}
        if led:  # a task's attempt counts when its Agent call settles it (report.add)
            taken = {folded.sessions[-1] for tid, folded in state.tasks.items()
                     if tid in self._unsettled and folded.sessions}
        for s in state.sessions.values():  # what the sessions before the crash spent
            if s.id not in taken and (led or not s.parent_session):
                for k, v in s.effective_usage().items():
                    self.report.usage[k] = self.report.usage.get(k, 0) + v
                self.report.cost_usd += s.effective_cost() or 0.0

    async def run(self) -> RunReport:
        """``run.resumed`` first, outside the dispatcher's error handling: a second resumer
        that loses the race must write nothing at all (not even a ``run.finished``)."""
        try:
            await self._claim_run()
        except BaseException:
            await self.aclose()
            raise
        return await super().run()

    async def _claim_run(self) -> None:
        """``run.resumed`` at the run stream's head: one resumer wins."""
        from eventstore.errors import WrongExpectedVersion
        from eventstore.model import NO_STREAM, NewEvent

        stream = f"run-{self.run_id}"
        head = self._run_head
        taken = {x.id for x, _, _ in self.takeover}
        dispatch = [] if self.config.lead is not None else [  # a lead dispatches itself
            t.id for t in self.tasks if t.id not in taken]
        data: dict[str, Any] = {
            "run_id": self.run_id, "from_version": head,
            "previous_status": self.state.derived_status(),
            "takeover": [{"task_id": t.id, "action": how,
                          "abandoned_session" if how == "attempt" else "session_id": sid}
                         for t, how, sid in self.takeover] + self.lead_takeover,
            "dispatch": dispatch, "abandoned_sessions": dict(self.abandon),
            **({"lead": self._lead_data} if self.config.lead is not None else {}),
            "completed": list(self.report.completed), "failed": dict(self.report.failed),
            "blocked": dict(self.report.blocked), "not_ours": dict(self.report.released),
            "provider": self.config.provider, "config_digest": self.config.digest(),
            "host": socket.gethostname(), "pid": os.getpid()}
        try:
            await self.store.append(stream, [NewEvent(
                type="run.resumed", data=data, actor="orchestrator",
                correlation_id=self.run_id)], NO_STREAM if head is None else head)
        except WrongExpectedVersion:
            raise ResumeRunError(f"run {self.run_id} was appended to while resuming it: "
                                 "another process is resuming (or still running) it") from None
        self._resumed_data = data

    async def _started(self) -> None:
        """The taken-over tasks start before any new dispatch."""
        from datetime import timedelta

        from orchestrator.backlog import ClaimLost
        from orchestrator.execute import Cancel

        dispatch = self._resumed_data["dispatch"]
        if self.progress is not None:
            self.progress.note(
                f"run {self.run_id}: resuming; {len(self.report.completed)} task(s) already "
                f"completed, {sum(h == 'resume' for _, h, _ in self.takeover)} session(s) to "
                f"resume, {len(dispatch)} task(s) to dispatch")
        from agents.resume import ResumeError, close_abandoned, load_session

        for gone, why in self.abandon.items():
            try:
                await close_abandoned(self.store, await load_session(self.store, gone), why)
            except ResumeError:  # it ended meanwhile, or someone else wrote to it
                continue
        assert self.backlog is not None
        lease = timedelta(seconds=self.config.lease_seconds)
        for task, how, sid in self.takeover:
            held: Any = None
            try:
                if task.status == "claimed" and task.worker == self.run_id:
                    held = await self.backlog.renew(task.id, self.run_id, lease=lease)
                else:
                    held = await self.backlog.claim(task.id, self.run_id, lease=lease)
            except ClaimLost:
                pass
            if held is None:
                self.pending.discard(task.id)
                self.report.released[task.id] = "taken by another worker during resume"
                continue
            handle = Cancel()
            if how == "resume":
                assert sid is not None
                fut = asyncio.ensure_future(self._resume_attempt(held, sid, handle, lease))
            elif how == "settle":
                assert sid is not None
                fut = asyncio.ensure_future(self._recorded_outcome(held, sid))
            else:
                fut = asyncio.ensure_future(self._attempt(held, handle, lease))
            self._running[fut] = (task.id, handle)

    async def _resume_attempt(self, task: Any, sid: str, handle: Any,
                              lease: Any, delegate: Any = None) -> Any:
        """Continue the task's session where the trail stops (``agents.resume``);
        ``delegate``: a lead run's, for the session's own ``Agent`` calls."""
        from agents.errors import AgentError
        from agents.resume import SessionFinished, SessionTaken, load_session
        from orchestrator.execute import TaskOutcome, fill_outcome, record_diff, supervise
        from orchestrator.workspace import WorkspaceError

        assert self.exec is not None and self.backlog is not None
        cfg, backlog = self.exec, self.backlog
        folded = self.state.sessions[sid]
        t0 = time.monotonic()
        out = TaskOutcome(task.id, int(folded.attempt or task.attempts or 1), sid, "failed")
        try:
            log = await load_session(self.store, sid)
            definition = cfg.agents.get(log.agent)
            ws = await cfg.workspaces.prepare(task.id, task.depends_on, fresh=False)
            session = resumed_session(
                self.store, log, definition, cfg.providers(task, definition),
                provider_name=cfg.provider_name, workspace=ws.path, model=cfg.model,
                approver=cfg.approver, cost_fn=cfg.catalog.cost,
                record_prompts=cfg.record_prompts, pass_env=tuple(cfg.pass_env),
                retry=cfg.retry,
                on_progress=lambda kind, data: cfg.on_progress(task.id, kind, data)
                if cfg.on_progress is not None else None,
                delegate=delegate, max_depth=_lead_max_depth())
        except SessionFinished:  # it ended after we folded: take the recorded ending
            return await self._recorded_outcome(task, sid)
        except (AgentError, WorkspaceError, LookupError) as exc:
            out.error, out.error_kind = f"cannot resume session {sid}: {exc}", "setup"
            out.seconds = time.monotonic() - t0
            return out
        out.workspace = ws.to_dict()

        async def heartbeat() -> None:
            await backlog.renew(task.id, self.run_id, lease=lease)

        def stop_as(status: str, reason: str) -> None:
            session.cancelled_as = (status, reason)

        s0 = time.monotonic()
        try:
            result, stopped = await supervise(
                session.run(resume=log), stop_as, cfg.timeout, handle, heartbeat,
                max(1.0, lease.total_seconds() / 3))
        except SessionTaken as exc:
            out.status, out.error, out.error_kind = "lease_lost", str(exc), "lease_lost"
            out.seconds = time.monotonic() - t0
            return out
        out.session_seconds = time.monotonic() - s0
        if stopped is not None:
            out.status, out.error = stopped
            out.error_kind = out.status
        if result is not None:
            fill_outcome(out, result)
        out.diff = await record_diff(cfg, ws, task, out, log.causation_id or sid)
        out.seconds = time.monotonic() - t0
        return out

    async def _recorded_outcome(self, task: Any, sid: str) -> Any:
        """The session ended before the crash but its task was not settled: settle it from
        the trail (nothing runs again), recording the workspace diff if it is missing."""
        from agents.resume import load_session
        from orchestrator.cli.replay import load_run
        from orchestrator.execute import record_diff

        assert self.exec is not None
        state = await load_run(self.store, self.run_id)
        s = state.sessions[sid]
        out = _trail_outcome(task, s)
        if not s.diffs:
            ws = await self.exec.workspaces.prepare(task.id, task.depends_on, fresh=False)
            out.workspace = ws.to_dict()
            try:
                cause = (await load_session(self.store, sid)).causation_id
            except Exception:
                cause = None
            out.diff = await record_diff(self.exec, ws, task, out, cause or sid)
        return out

    # -- a run led by a lead agent (orchestrator.lead) ------------------------------------
    async def _prepare_lead(self, ids: list[str]) -> None:
        """What the lead's calls need: the run's tasks (as the lead saw them), the ad-hoc
        tasks it created, and which task each recorded ``Agent`` call dispatched."""
        assert self.backlog is not None
        adhoc = f"adhoc-{self.run_id}-"
        self.tasks = [self.backlog.get(t) for t in ids
                      if t in self.backlog and not t.startswith(adhoc)]
        self._adhoc = {t for t in ids if t.startswith(adhoc) and t in self.backlog}
        for tid in sorted(self._unsettled):
            folded = self.state.tasks.get(tid)
            last = folded.sessions[-1] if folded and folded.sessions else None
            s = self.state.sessions.get(last) if last else None
            if s is None:
                continue
            action = next((x.action for x in self.plan.sessions if x.session_id == s.id), "")
            if s.started_at is None:  # dispatched, never started: the call starts anew
                self.lead_takeover.append({"task_id": tid, "action": "attempt",
                                           "abandoned_session": s.id, "by": "lead"})
            elif action == "resume" or (action == "done"
                                        and self.backlog.get(tid).status == "claimed"):
                self.lead_takeover.append({"task_id": tid, "session_id": s.id, "by": "lead",
                                           "action": "resume" if action == "resume"
                                           else "settle"})
        lead = self.state.lead or {}
        sid = lead.get("session_id")
        started = isinstance(sid, str) and sid in self.state.sessions \
            and self.state.sessions[sid].started_at is not None
        self._lead_session = sid if started else None
        self._lead_data = {"session_id": sid, "action": "resume" if started else "start"}

    def _install_lead(self) -> None:
        lead = self.lead
        if lead is None:  # the recorded --lead agent is gone: prepare_roles said so
            return
        lead.resume_session = self._lead_session
        lead.resumer = self
        lead.adhoc = set(self._adhoc)

    async def _read_run_stream(self) -> None:
        """What the fold does not keep: which task each ``Agent`` call dispatched, and
        the reviews that completed (a verdict recorded before the crash is not asked
        for again)."""
        async for ev in self.store.read_stream(f"run-{self.run_id}"):
            d = ev.data if isinstance(ev.data, dict) else {}
            if ev.type == "task.dispatched" and d.get("tool_use_id"):
                call = (str(d.get("parent_session")), str(d["tool_use_id"]))
                self._calls[call] = (str(d.get("task_id")), str(d.get("session_id")))
            elif ev.type == "review.completed" and d.get("session_id"):
                self._reviews[(str(d.get("task_id")), str(d["session_id"]))] = d

    async def call_task(self, req: Any) -> Any:
        """The task a lead's ``Agent`` call in flight at the crash had started: the one it
        dispatched (``task.dispatched`` names the call), else an ad-hoc task it created
        (its ``source``); None when it had not got that far (the call starts now)."""
        assert self.backlog is not None
        hit = self._calls.get((req.parent_session, req.tool_use_id))
        if hit is not None and hit[0] in self.backlog:
            return self.backlog.get(hit[0])
        for t in self.backlog.tasks():
            src = t.source or {}
            if src.get("kind") == "lead" and src.get("tool_use_id") == req.tool_use_id \
                    and src.get("session") == req.parent_session:
                return t
        return None

    async def continue_attempt(self, task: Any, handle: Any, lease: Any, via: Any) -> Any:
        """The first attempt of a continued ``Agent`` call: the call's session resumed
        when it was in flight (stopped by the crash or by Ctrl-C), its recorded ending when
        it ended before the task was settled; None: nothing started, a new attempt."""
        hit = self._calls.get((via.parent_session, via.tool_use_id))
        s = self.state.sessions.get(hit[1]) if hit is not None else None
        if s is None or hit is None or hit[0] != task.id:
            return None
        action = next((p.action for p in self.plan.sessions if p.session_id == s.id), "")
        if action == "resume":  # (a task Ctrl-C released was claimed again: attempt + 1)
            return await self._resume_attempt(task, s.id, handle, lease, delegate=via.delegate)
        if action == "done" and task.status == "claimed" and s.attempt in (None,
                                                                           task.attempts):
            return await self._recorded_outcome(task, s.id)
        return None

    def settled_outcome(self, task: Any) -> Any:
        """How a task settled before the crash, for the lead's recorded ``Agent`` call."""
        from orchestrator.execute import TaskOutcome

        folded = self.state.tasks.get(task.id)
        sid = folded.sessions[-1] if folded and folded.sessions else None
        if sid is not None and sid in self.state.sessions:
            out = _trail_outcome(task, self.state.sessions[sid])
        else:
            out = TaskOutcome(task.id, int(task.attempts or 1), sid, task.status,
                              error=task.error)
        result = task.result if isinstance(task.result, dict) else {}
        review = result.get("review") or task.review
        out.review = review if isinstance(review, dict) else None
        return out


class RecordedReviews:
    """The run's reviewer, except for an attempt whose review completed before the crash
    (the crash hit between ``review.completed`` and the task's settlement): its recorded
    verdict is used, the reviewer is not asked again. A review stopped from outside
    (Ctrl-C) was no verdict: that one is asked again."""

    def __init__(self, reviewer: Any, recorded: dict[tuple[str, str], dict[str, Any]]
                 ) -> None:
        self.reviewer = reviewer
        self.recorded = recorded

    async def __call__(self, task: Any, outcome: Any) -> tuple[bool, str]:
        from orchestrator.execute import RELEASED

        d = self.recorded.pop((task.id, str(outcome.session_id)), None)
        if d is None or d.get("status") in RELEASED:
            accepted, why = await self.reviewer(task, outcome)
            return bool(accepted), str(why)
        outcome.review = {k: d.get(k) for k in ("verdict", "reason", "feedback",
                                                "reviewer_session", "agent", "attempt",
                                                "status")}
        return d.get("verdict") == "accept", str(d.get("reason") or "")

    def cancel(self, reason: str) -> None:
        stop = getattr(self.reviewer, "cancel", None)
        if stop is not None:
            stop(reason)


def _trail_outcome(task: Any, s: Any) -> Any:
    """A ``TaskOutcome`` from a folded session (``orchestrator.fold``)."""
    from orchestrator.execute import TaskOutcome

    return TaskOutcome(task.id, int(s.attempt or task.attempts or 1), s.id, s.status,
                       error=s.error, error_kind=s.error_kind, final_text=s.final_text or "",
                       turns=len(s.turns), tool_calls=len(s.tool_calls),
                       denials=sum(c.decision == "denied" for c in s.tool_calls.values()),
                       usage=dict(s.effective_usage()), cost_usd=s.effective_cost())


def _lead_max_depth() -> int:
    from orchestrator.lead import MAX_DEPTH

    return MAX_DEPTH


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
