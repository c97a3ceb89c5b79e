"""The fixed dispatcher behind ``orchestrail run``: the backlog's ready tasks, in
dependency order, each to its agent, with every decision in the trail.

A run is ``run.started`` (the tasks it means to work, a digest of its configuration, the
agents with their definition hashes, the working directory and git state), then per
attempt: ``task.claimed`` (the claim on the task's own stream, worker = the run id,
optimistic concurrency, so a concurrent ``worker`` can never take the same task),
``task.dispatched`` and the session (``orchestrator.execute``), then ``task.completed``,
``task.failed`` (``retry: true`` when another attempt follows) or ``task.released``
(stopped from outside); finally ``run.finished`` with the status and totals. When a run
budget stops the dispatching, ``run.stopping`` records why, when it happens.

Nothing the dispatcher knows lives only in memory: which tasks are done, failed, or
waiting comes from the task streams (the ``Backlog`` fold), attempts and retries from
``task.failed``/``task.dispatched``, spending from the sessions' events. ``resume`` can
rebuild all of it from the store.

Preflight checks happen before ``run.started`` and write nothing: a dependency cycle, a
task whose agent is unknown or missing, a task without a script, no ready task, a
workspace directory that cannot be written. They raise ``RunInputError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.execute import (
    RELEASED,
    Cancel,
    ExecConfig,
    TaskOutcome,
    execute_task,
    settle,
)

if TYPE_CHECKING:
    from agents.definition import AgentDefinition
    from agents.discovery import AgentRegistry
    from agents.loop import Budgets
    from eventstore.base import EventStore
    from orchestrator.backlog import Backlog, TaskState
    from orchestrator.lead import LeadRun
    from orchestrator.progress import RunProgress


class RunInputError(Exception):
    """The run cannot start; nothing was written. ``problems``: one line each."""

    def __init__(self, problems: list[str], code: int = 2) -> None:
        self.problems = problems
        self.code = code
        super().__init__(problems[0] + (f" (+{len(problems) - 1} more)"
                                        if len(problems) > 1 else ""))


class RunAborted(Exception):
    """The run stopped because the store failed under it (recorded when still possible)."""


class Reviewer(Protocol):
    """Accepts or rejects a completed attempt before its task is completed (the hook a
    reviewer agent plugs into). Returns ``(accepted, reason)``; a rejection fails the
    attempt with the reason (retried like a transient failure when attempts are left)."""

    async def __call__(self, task: TaskState, outcome: TaskOutcome) -> tuple[bool, str]: ...


def new_run_id() -> str:
    """Readable, sortable, unique: ``20261123T120102-3f9a``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class RunConfig:
    """Everything that shapes a run (its digest goes into ``run.started``)."""

    project: Path
    provider: str = "script"
    script: Path | None = None
    model: str | None = None
    parallel: int = 1
    max_turns: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    max_wall_seconds: float | None = None
    run_max_usd: float | None = None
    run_max_tokens: int | None = None
    task_timeout: float | None = None
    retries: int = 2
    retry_delay: float = 2.0
    model_attempts: int = 5  # attempts per model call inside a session (agents.loop)
    only: tuple[str, ...] = ()
    workspace: str = "auto"
    run_id: str | None = None
    policy: Path | None = None
    record_prompts: bool = False
    pass_env: tuple[str, ...] = ()
    lead: str | None = None  # --lead: a lead agent runs the backlog (orchestrator.lead)
    review: str | None = None  # --review: a reviewer agent judges each attempt
    lease_seconds: float = 600.0

    def budgets(self) -> Budgets:
        from agents.loop import Budgets

        return Budgets(max_turns=self.max_turns, max_tokens=self.max_tokens,
                       max_cost_usd=self.max_usd, max_wall_seconds=self.max_wall_seconds)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("project", "script", "policy"):
            d[k] = str(d[k]) if d[k] is not None else None
        d["only"], d["pass_env"] = list(self.only), list(self.pass_env)
        return d

    def digest(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if k != "run_id"}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


@dataclass
class RunReport:
    """What a run did; ``to_dict`` is the ``--json`` summary and ``run.finished``'s data."""

    run_id: str
    status: str = "running"
    reason: str | None = None
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    released: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    unpriced: int = 0
    session_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    duration_s: float = 0.0
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(self.usage.values())

    def add(self, outcome: TaskOutcome) -> None:
        self.attempts += 1
        self.spend(outcome.usage, outcome.cost_usd, outcome.turns)
        self.session_seconds += outcome.session_seconds
        self.outcomes.append(outcome.to_dict())

    def spend(self, usage: dict[str, int], cost_usd: float | None, turns: int) -> None:
        """Count a session's tokens and cost (a task's attempt, or a lead's or reviewer's
        session, which are no attempt)."""
        for k, v in usage.items():
            if isinstance(v, int):
                self.usage[k] = self.usage.get(k, 0) + v
        if cost_usd is None:
            self.unpriced += turns > 0
        else:
            self.cost_usd += cost_usd

    def exit_code(self) -> int:
        return {"completed": 0, "cancelled": 130}.get(self.status, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "status": self.status, "reason": self.reason,
            "tasks": {"completed": self.completed, "failed": self.failed,
                      "released": self.released, "blocked": self.blocked,
                      "not_run": self.not_run},
            "attempts": self.attempts, "retries": self.retries, "usage": self.usage,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 8) if not self.unpriced else None,
            "cost_usd_priced": round(self.cost_usd, 8), "unpriced_sessions": self.unpriced,
            "duration_ms": round(self.duration_s * 1000, 3),
            "session_ms": round(self.session_seconds * 1000, 3),
        }


class Runner:
    """``await Runner(store, config).prepare()`` (checks, may raise ``RunInputError``),
    then ``await runner.run()`` -> ``RunReport``. ``cancel(reason)`` (e.g. from a SIGINT
    handler) stops the run: running sessions are cancelled, their tasks released."""

    def __init__(self, store: EventStore, config: RunConfig, *,
                 progress: RunProgress | None = None, app_config: Any = None,
                 reviewer: Reviewer | None = None) -> None:
        self.store = store
        self.config = config
        self.progress = progress
        self.app_config = app_config
        self.reviewer = reviewer
        self.lead: LeadRun | None = None  # set by prepare() with --lead
        self.run_id = config.run_id or new_run_id()
        self.report = RunReport(self.run_id)
        self.backlog: Backlog | None = None
        self.agents: AgentRegistry | None = None
        self.tasks: list[TaskState] = []
        self.pending: set[str] = set()
        self.exec: ExecConfig | None = None
        self._git: dict[str, Any] | None = None
        self._running: dict[asyncio.Task[TaskOutcome], tuple[str, Cancel]] = {}
        self._stop: tuple[str, str] | None = None
        self._wake = asyncio.Event()
        self._closers: list[Any] = []  # provider clients to close when the run ends

    # -- preflight ---------------------------------------------------------------------
    async def prepare(self) -> None:
        """Check everything that can be checked before ``run.started``; write nothing."""
        from agents.discovery import load_agents
        from orchestrator.backlog import Backlog
        from orchestrator.taskgraph import find_cycle
        from orchestrator.workspace import git_info

        cfg = self.config
        if not cfg.project.is_dir():
            raise RunInputError([f"project directory {cfg.project} does not exist"])
        if cfg.parallel < 1:
            raise RunInputError([f"--parallel must be at least 1, got {cfg.parallel}"])
        if cfg.workspace == "none" and cfg.parallel > 1:
            raise RunInputError(["--workspace none shares one directory between tasks: "
                                 "it needs --parallel 1"])
        if await self.store.stream_version(f"run-{self.run_id}") is not None:
            raise RunInputError([f"run {self.run_id!r} already exists (pick another "
                                 f"--run-id, or `orchestrail resume {self.run_id}`)"])
        self.backlog = backlog = await Backlog.load(self.store, correlation_id=self.run_id)
        self.tasks = self._select(backlog)
        problems: list[str] = []
        graph = {t.id: [d for d in t.depends_on if d != t.id] for t in backlog.tasks()}
        cycle = find_cycle(graph)
        if cycle:
            problems.append(f"dependency cycle {' -> '.join(cycle)}: none of these tasks can "
                            "ever be ready (fix the task file and re-import it)")
        self.agents = agents = load_agents(cfg.project)
        skipped = {sk.path.stem: sk.error.message for sk in agents.skipped}
        for t in self.tasks:
            if t.agent is None:
                if cfg.lead is None:
                    problems.append(
                        f"task {t.id!r} has no agent: tasks without one are routed by a lead "
                        "agent, and this run has none; give --lead, or give the task an "
                        "agent, e.g. `orchestrail task import FILE --agent NAME`")
            elif t.agent not in agents:
                known = ", ".join(agents.names()) or "none found"
                why = f" ({skipped[t.agent]})" if t.agent in skipped else ""
                problems.append(f"task {t.id!r}: unknown agent {t.agent!r}{why} (known: "
                                f"{known}; searched {cfg.project / '.claude' / 'agents'}, "
                                f"{cfg.project / 'agents'}, ~/.claude/agents)")
        providers = self._providers(problems)
        from orchestrator.roles import prepare_roles

        install_roles = prepare_roles(self, problems)
        if problems:
            raise RunInputError(problems)
        if not self.tasks:
            raise RunInputError([self._nothing_to_run(backlog)], code=1)
        if not any(backlog.deps_done(t) for t in self.tasks):
            blocked = "; ".join(f"{t.id} waits for {', '.join(self._waiting_on(t))}"
                                for t in self.tasks[:5])
            raise RunInputError([f"no ready tasks: {len(self.tasks)} open task(s), each "
                                 f"waiting for another: {blocked}"], code=1)
        self._git = await git_info(cfg.project)
        self.exec = await self.build_exec(agents, providers)
        install_roles()
        self.pending = {t.id for t in self.tasks}

    async def build_exec(self, agents: AgentRegistry, providers: Any, *,
                         workspace_mode: str | None = None,
                         actor: str = "orchestrator") -> ExecConfig:
        """The ``ExecConfig`` every attempt of this run shares: workspaces set up (a
        ``RunInputError`` when they cannot be written), approver, budgets, retry policy.
        Shared with ``worker`` and ``resume``; ``self._git`` must be set first."""
        from agents.loop import RetryPolicy
        from agents.models import ModelCatalog
        from orchestrator.workspace import WorkspaceError, Workspaces

        cfg = self.config
        workspaces = Workspaces(cfg.project, self.run_id,
                                (workspace_mode or cfg.workspace),  # type: ignore[arg-type]
                                base_commit=(self._git or {}).get("commit"))
        try:
            await workspaces.setup()
        except WorkspaceError as exc:
            raise RunInputError([str(exc)]) from None
        approver = None
        if cfg.policy is not None:
            from agents.approval import make_approver

            approver = make_approver(policy=cfg.policy, workspace=cfg.project)
        return ExecConfig(
            store=self.store, run_id=self.run_id, project=cfg.project, agents=agents,
            workspaces=workspaces, provider_name=cfg.provider, providers=providers,
            catalog=ModelCatalog.from_config(self.app_config), budgets=cfg.budgets(),
            model=cfg.model, timeout=cfg.task_timeout, approver=approver,
            retry=RetryPolicy(max_attempts=cfg.model_attempts),
            record_prompts=cfg.record_prompts, pass_env=cfg.pass_env,
            on_progress=self.progress, config=self.app_config, actor=actor)

    def _select(self, backlog: Backlog) -> list[TaskState]:
        """The tasks this run means to work: ``--only`` ids, or every open task; minus the
        ones that can never become ready (a dependency failed or was cancelled)."""
        from orchestrator.backlog import TaskNotFound

        if self.config.only:
            chosen = []
            problems = []
            for tid in self.config.only:
                try:
                    t = backlog.get(tid)
                except TaskNotFound as exc:
                    problems.append(str(exc))
                    continue
                if t.status != "open":
                    problems.append(f"task {tid!r} is {t.status}, not open")
                chosen.append(t)
            if problems:
                raise RunInputError(problems)
        else:
            chosen = [t for t in backlog.tasks() if t.status == "open"]
        ids = {t.id for t in chosen}
        out: list[TaskState] = []
        dead: dict[str, str] = {}
        for t in chosen:  # creation order: dependencies come first
            why = self._dead(backlog, t, ids, dead)
            if why:
                dead[t.id] = why
                self.report.blocked[t.id] = why
            else:
                out.append(t)
        return out

    @staticmethod
    def _dead(backlog: Backlog, t: TaskState, ids: set[str], dead: dict[str, str]) -> str:
        for dep in t.depends_on:
            if dep in dead:
                return f"depends on {dep}, which cannot run"
            if dep not in backlog:
                return f"depends on unknown task {dep}"
            st = backlog.get(dep).status
            if st in ("failed", "cancelled"):
                return f"depends on {dep}, which {st}"
            if st != "completed" and dep not in ids:
                return f"depends on {dep} ({st}), which is not part of this run"
        return ""

    def _waiting_on(self, t: TaskState) -> list[str]:
        assert self.backlog is not None
        return [d for d in t.depends_on if d in self.backlog and
                self.backlog.get(d).status != "completed"]

    def _nothing_to_run(self, backlog: Backlog) -> str:
        counts: dict[str, int] = {}
        for t in backlog.tasks():
            counts[t.status] = counts.get(t.status, 0) + 1
        if not counts:
            return ("nothing to run: the backlog is empty (add tasks with `orchestrail task "
                    "import FILE` or `orchestrail task add`)")
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        blocked = "; ".join(f"{k}: {v}" for k, v in list(self.report.blocked.items())[:5])
        return f"nothing to run: no open task that can become ready ({summary})" + (
            f"; blocked: {blocked}" if blocked else "")

    def _providers(self, problems: list[str]) -> Any:
        """The provider factory for this run, after checking it can serve every task."""
        from agents.providers import PROVIDERS, get_provider

        cfg = self.config
        if cfg.provider not in PROVIDERS or cfg.provider == "replay":
            problems.append(f"--provider {cfg.provider}: use one of script, anthropic, "
                            "openai, claude-code (replaying a run is `orchestrail rerun`)")
            return None
        if cfg.provider == "script":
            from orchestrator.scripts import ScriptSet, ScriptSetError

            if cfg.script is None:
                problems.append("--provider script needs --script FILE|DIR (one script for "
                                "every task, a file with a tasks: section per task id, or a "
                                "directory of <task-id>.yaml)")
                return None
            try:
                scripts = ScriptSet(cfg.script)
            except ScriptSetError as exc:
                problems.append(str(exc))
                return None
            problems += scripts.check(self.tasks)

            def script_provider(task: TaskState, definition: AgentDefinition) -> Any:
                return scripts.provider(task)

            return script_provider
        from agents.errors import AgentError
        from agents.providers.base import ProviderError

        if cfg.provider == "claude-code":  # a session runner, made per task
            from agents.providers.claude_code import find_claude_binary

            try:
                find_claude_binary(config=self.app_config)
            except ProviderError as exc:
                problems.append(f"--provider claude-code: {exc}")
            return None
        try:  # one client for the whole run (connection pool), closed when it ends
            shared = get_provider(cfg.provider, config=self.app_config)
        except (AgentError, ProviderError) as exc:
            problems.append(f"--provider {cfg.provider}: {exc}")
            return None
        except ImportError as exc:
            problems.append(f"--provider {cfg.provider}: its SDK is not installed ({exc}); "
                            f"pip install 'orchestrail[{cfg.provider}]'")
            return None
        self._closers.append(shared.aclose)

        def provider(task: TaskState, definition: AgentDefinition) -> Any:
            return shared

        return provider

    # -- the run -----------------------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Stop dispatching and cancel every running session (idempotent)."""
        if self._stop is None or self._stop[0] != "cancelled":
            self._stop = ("cancelled", reason)
        for _, handle in self._running.values():
            handle.cancel("cancelled", reason)
        for role in (self.lead, self.reviewer):
            stop = getattr(role, "cancel", None)
            if stop is not None:
                stop(reason)
        self._wake.set()

    async def run(self) -> RunReport:
        """Dispatch until nothing is left to do; ``RunAborted`` when the store fails."""
        assert self.exec is not None, "call prepare() first"
        try:
            await self._run()
        finally:
            await self.aclose()
        return self.report

    async def aclose(self) -> None:
        """Close the provider clients this run opened (also when ``prepare`` failed)."""
        closers, self._closers = self._closers, []
        for close in closers:
            try:
                await close()
            except Exception:  # closing a client must not hide the run's outcome
                pass

    async def _run(self) -> None:
        from eventstore.errors import StoreError

        await self._started()
        try:
            if self.lead is not None:
                await self.lead.run()
            else:
                await self._dispatch()
        except StoreError as exc:
            recorded = await self._abort(f"store failed: {exc}")
            raise RunAborted(
                f"the store failed during run {self.run_id}: {exc}; " + (
                    "the run is recorded as failed up to here" if recorded else
                    "the end of the run could not be recorded (`orchestrail resume` can "
                    "finish it once the store is back)")) from exc
        except Exception as exc:  # a bug: still stop the sessions and record the end
            await self._abort(f"internal error: {type(exc).__name__}: {exc}")
            raise
        await self._finished()

    async def _started(self) -> None:
        from eventstore.model import NO_STREAM, NewEvent

        assert self.agents is not None and self.exec is not None
        used = sorted({t.agent for t in self.tasks if t.agent}
                      | {n for n in (self.config.lead, self.config.review) if n})
        agents = {}
        for name in used:
            d = self.agents.get(name)
            agents[name] = {"definition_hash": d.definition_hash,
                            "source": str(d.source) if d.source else None, "model": d.model}
        data = {
            "run_id": self.run_id, "tasks": [t.id for t in self.tasks],
            "blocked": self.report.blocked, "config": self.config.to_dict(),
            "config_digest": self.config.digest(), "agents": agents,
            "cwd": str(self.config.project), "git": self._git,
            "workspace_mode": self.exec.workspaces.mode, "provider": self.config.provider,
            "host": socket.gethostname(), "pid": os.getpid(), "worker": self.run_id,
            "version": _version()}
        await self.store.append(f"run-{self.run_id}", [NewEvent(
            type="run.started", data=data, actor="orchestrator", correlation_id=self.run_id)],
            NO_STREAM)
        if self.progress is not None:
            git = self._git or {}
            dirty = " (uncommitted changes are not in the task workspaces)" \
                if git.get("dirty") and self.exec.workspaces.mode == "worktree" else ""
            self.progress.note(f"run {self.run_id}: {len(self.tasks)} task(s), provider "
                               f"{self.config.provider}, parallel {self.config.parallel}, "
                               f"workspaces: {self.exec.workspaces.mode}{dirty}")

    def _ready(self, not_before: dict[str, float]) -> list[TaskState]:
        assert self.backlog is not None
        now = time.monotonic()
        busy = {tid for tid, _ in self._running.values()}
        return [t for t in self.backlog.ready()
                if t.id in self.pending and t.id not in busy
                and not_before.get(t.id, 0.0) <= now]

    async def _dispatch(self) -> None:
        assert self.backlog is not None
        backlog = self.backlog
        lease = timedelta(seconds=self.config.lease_seconds)
        not_before: dict[str, float] = {}
        while True:
            self._check_store()
            ready = self._ready(not_before)
            if not ready:
                # Our own claims and outcomes are folded as we append them; read what
                # others (a worker, a task import) appended only when it could matter.
                await backlog.refresh()
                ready = self._ready(not_before)
            if self._stop is None:
                for task in ready:
                    if len(self._running) >= self.config.parallel:
                        break
                    claimed = await backlog.claim(task.id, self.run_id, lease=lease)
                    if claimed is None:
                        self.pending.discard(task.id)
                        self.report.released[task.id] = "claimed by another worker"
                        continue
                    not_before.pop(task.id, None)
                    handle = Cancel()
                    fut = asyncio.ensure_future(self._attempt(claimed, handle, lease))
                    self._running[fut] = (task.id, handle)
            if not self._running:
                waits = [t for tid, t in not_before.items() if tid in self.pending]
                if waits and self._stop is None:
                    await self._sleep(min(waits) - time.monotonic())
                    continue
                break
            timeout = None
            if not_before and self._stop is None:
                timeout = max(0.0, min(not_before.values()) - time.monotonic())
            await self._wait_and_settle(timeout, not_before)

    async def _wait_and_settle(self, timeout: float | None,
                               not_before: dict[str, float]) -> None:
        """Wait until an attempt ends, ``cancel`` wakes us or ``timeout`` passes, then
        settle every attempt that ended (shared with ``worker``)."""
        assert self.backlog is not None
        self._wake.clear()
        wake: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({*self._running, wake}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        for fut in [f for f in self._running if f.done()]:
            tid, _ = self._running[fut]
            outcome = fut.result()  # a store error leaves it running for _abort
            del self._running[fut]
            self._check_store()
            await self._settle(self.backlog.get(tid), outcome, not_before)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), max(0.0, seconds))
        except TimeoutError:
            pass

    async def _attempt(self, task: TaskState, handle: Cancel, lease: timedelta) -> TaskOutcome:
        assert self.exec is not None and self.backlog is not None
        backlog = self.backlog

        async def heartbeat() -> None:
            await backlog.renew(task.id, self.run_id, lease=lease)

        return await execute_task(task, task.attempts, self.exec, cancel=handle,
                                  heartbeat=heartbeat,
                                  heartbeat_every=self._heartbeat_every(lease))

    def _heartbeat_every(self, lease: timedelta) -> float:
        """Seconds between lease renewals: a third of the lease (a worker sets its own)."""
        return max(1.0, lease.total_seconds() / 3)

    async def _settle(self, task: TaskState, outcome: TaskOutcome,
                      not_before: dict[str, float]) -> None:
        from agents.loop import RetryPolicy

        assert self.backlog is not None
        self.report.add(outcome)
        if outcome.ok and self.reviewer is not None:
            accepted, why = await self.reviewer(task, outcome)
            if not accepted and (outcome.review or {}).get("status") in RELEASED:
                # the review itself was stopped from outside (Ctrl-C): give the task back
                outcome.status, outcome.error = "cancelled", f"stopped during review: {why}"
            elif not accepted:
                outcome.status, outcome.error = "rejected", f"rejected by review: {why}"
                outcome.error_kind = "provider_transient"  # another attempt may fix it
        retry = (outcome.transient or outcome.status == "rejected") and \
            outcome.attempt <= self.config.retries and self._stop is None
        if outcome.status == "rejected":
            outcome.status = "failed"
        action = await settle(self.backlog, outcome, self.run_id, retry=retry)
        if action == "completed":
            self.pending.discard(task.id)
            self.report.completed.append(task.id)
        elif action == "released":
            self.pending.discard(task.id)
            self.report.released[task.id] = outcome.reason()
        elif retry:
            self.report.retries += 1
            delay = RetryPolicy(base_delay=self.config.retry_delay,
                                max_delay=max(60.0, self.config.retry_delay)).delay(
                                    outcome.attempt)
            not_before[task.id] = time.monotonic() + delay
            action = f"retry in {delay:.1f} s"
        else:
            self.pending.discard(task.id)
            self.report.failed[task.id] = outcome.reason()
        if self.progress is not None:
            self.progress.finished(task.id, outcome, action)
        await self._check_run_budget()

    async def _check_run_budget(self) -> None:
        from eventstore.model import NewEvent

        cfg, rep = self.config, self.report
        hit: tuple[str, float, float] | None = None
        if cfg.run_max_usd is not None and rep.cost_usd >= cfg.run_max_usd:
            hit = ("cost", cfg.run_max_usd, round(rep.cost_usd, 8))
        elif cfg.run_max_tokens is not None and rep.tokens >= cfg.run_max_tokens:
            hit = ("tokens", cfg.run_max_tokens, rep.tokens)
        if hit is None or self._stop is not None:
            return
        kind, limit, used = hit
        reason = f"run budget ({kind}) reached: used {used} of {limit}"
        self._stop = (f"budget_exceeded:{kind}", reason)
        await self.store.append(f"run-{self.run_id}", [NewEvent(
            type="run.stopping", actor="orchestrator", correlation_id=self.run_id,
            data={"reason": reason, "status": f"budget_exceeded:{kind}", "limit": limit,
                  "used": used, "running": [tid for tid, _ in self._running.values()]})])
        if self.progress is not None:
            self.progress.note(f"run {self.run_id}: {reason}; no new tasks, waiting for "
                               f"{len(self._running)} running")

    def _check_store(self) -> None:
        """An SQLite file whose directory was removed keeps accepting writes (to an
        unlinked inode) that nobody can ever read: treat it as gone."""
        from eventstore.errors import StoreError

        path = getattr(self.store, "path", None)
        if isinstance(path, Path) and not path.exists():
            raise StoreError(f"SQLite store {path} was removed during the run")

    def _close_report(self) -> None:
        rep = self.report
        rep.duration_s = time.monotonic() - rep.started
        assert self.backlog is not None
        for tid in sorted(self.pending):
            t = self.backlog.get(tid)
            waiting = [d for d in t.depends_on if d in rep.failed or d in rep.blocked]
            if waiting:
                rep.blocked[tid] = f"depends on {', '.join(waiting)}, which did not complete"
            else:
                rep.not_run.append(tid)
        if self._stop is not None:
            rep.status, rep.reason = self._stop
        elif rep.failed or rep.blocked or rep.not_run or rep.released:
            rep.status = "failed"
            rep.reason = (f"{len(rep.failed)} failed, {len(rep.blocked)} blocked, "
                          f"{len(rep.released)} released, {len(rep.not_run)} not run")
        else:
            rep.status = "completed"

    async def _finished(self) -> None:
        from eventstore.model import NewEvent

        self._close_report()
        await self.store.append(f"run-{self.run_id}", [NewEvent(
            type="run.finished", data=self.report.to_dict(), actor="orchestrator",
            correlation_id=self.run_id)])

    async def _abort(self, why: str) -> bool:
        """Stop the sessions, give their tasks back and record the end of the run, as far
        as the store still answers (True: ``run.finished`` was recorded)."""
        from eventstore.errors import StoreError
        from eventstore.model import NewEvent
        from orchestrator.backlog import TaskStateError

        self.cancel(why)
        running = [tid for tid, _ in self._running.values()]
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
            self._running.clear()
        assert self.backlog is not None
        for tid in running:
            try:
                self._check_store()
                await self.backlog.release(tid, self.run_id, reason=why)
            except TaskStateError:
                continue  # already settled
            except StoreError:
                break
            self.report.released[tid] = why
            self.pending.discard(tid)
        self._close_report()
        self.report.status, self.report.reason = "failed", why
        try:
            self._check_store()
            await self.store.append(f"run-{self.run_id}", [NewEvent(
                type="run.finished", data=self.report.to_dict(), actor="orchestrator",
                correlation_id=self.run_id)])
        except Exception:  # the store is gone; resume will find the run unfinished
            self.report.reason += " (run.finished could not be recorded)"
            return False
        return True


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orchestrail")
    except PackageNotFoundError:
        return None
