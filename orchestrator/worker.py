"""``orchestrail worker``: a long-lived process that claims ready tasks from a shared store,
works them one at a time (or ``parallel`` at a time), and takes over the tasks of workers
that died. Start as many as you like, on one machine or many, against one PostgreSQL store
(SQLite works too for several processes on one machine).

Why a worker is a ``Runner``: everything after the claim is what ``orchestrail run``
already does (``execute_task``, retries, budgets, review, settling, ``run.started`` /
``run.finished``), so a worker only replaces *what to dispatch* (whatever is claimable in
the whole backlog, as it appears, instead of a fixed list) and *when to stop* (idle, max
tasks, a signal).

The model, recorded in the trail:

* **Each worker process is a run**, id ``worker-<name>-<time>-<hex>``: ``run.started``
  (``kind: worker``, name, host, pid, lease and heartbeat), its attempts
  (``task.dispatched`` and the sessions, correlated to that run), ``run.finished`` when it
  exits. ``runs``, ``replay`` and ``audit`` show a worker's work like any run's. A worker
  killed with SIGKILL leaves its run without ``run.finished``; its tasks are not stuck.
* **The claim's ``worker`` is the run id** (unique per process, so a restarted worker with
  the same ``--id`` is a different claimant), with the lease expiry in ``lease_until``.
* **Heartbeats are renewals**: every ``heartbeat`` seconds the holder appends another
  ``task.claimed`` with a later ``lease_until`` (one small event per heartbeat on the
  task's stream; with the defaults, 60 s lease and 20 s heartbeat, 3 events a minute).
* **Takeover**: a claimed task whose ``lease_until`` passed is claimable by any worker; the
  new claim carries ``took_over_from`` (the silent worker) and ``expired_lease_until``.
  The new holder starts a fresh attempt (a new session) in its own workspace.
* **Exactly-once completion, at-least-once execution**: completing, failing or releasing
  needs the claim (``Backlog`` appends at the task stream's version and checks the
  holder), so a worker whose lease was taken over cannot complete the task: its
  completion is refused, logged and recorded as ``worker.claim_lost`` on its run stream,
  and ``task.completed`` appears once per task. The tool calls of the slow or
  partitioned worker's attempt, however, did run: a task can be *executed* more than
  once (its side effects too) when a worker stalls past its lease. Keep leases well above
  the heartbeat interval and make tools idempotent where a double run would hurt.
* A lost heartbeat (the lease was taken over, or the store refused the renewal) stops the
  session at once (``agent.failed`` with status ``lease_lost``).
* SIGTERM / SIGINT: stop claiming, cancel the running sessions, release their tasks
  (``task.released``, reason ``cancelled: ...``) so another worker picks them up at once,
  then ``run.finished`` with status ``stopped``.

A worker claims only the tasks it can serve: an agent it discovers and, with the script
provider, a script for the task. Others are left for other workers (listed as
``skipped`` in its summary).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from orchestrator.execute import Cancel, TaskOutcome
from orchestrator.runner import RunConfig, RunInputError, Runner, RunReport, _version

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from orchestrator.backlog import TaskState
    from orchestrator.progress import RunProgress

log = structlog.get_logger("orchestrail.worker")

#: How many equally urgent tasks a contended worker spreads its first claim over.
SPREAD = 8
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def default_name() -> str:
    """``<host>-<pid>``: unique enough on one machine, readable in the trail."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def worker_run_id(name: str) -> str:
    return f"worker-{name}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class WorkerConfig:
    """How a worker holds its claims and when it stops."""

    name: str = field(default_factory=default_name)
    lease: float = 60.0  # seconds a claim lasts without a heartbeat
    heartbeat: float | None = None  # seconds between renewals (default lease / 3)
    max_tasks: int | None = None  # attempts to start, then exit
    idle_exit: float | None = None  # exit after this long with nothing to claim
    poll: float | None = None  # how often an idle worker looks again (default min(1, lease/4))

    @property
    def heartbeat_s(self) -> float:
        return self.heartbeat if self.heartbeat is not None else self.lease / 3

    @property
    def poll_s(self) -> float:
        return self.poll if self.poll is not None else min(1.0, self.lease / 4)

    def problems(self) -> list[str]:
        out = []
        if not NAME_RE.match(self.name):
            out.append(f"--id {self.name!r}: 1-64 letters, digits and _ . -, starting with "
                       "a letter or digit")
        if self.lease <= 0:
            out.append(f"--lease must be positive, got {self.lease:g}")
        elif not 0 < self.heartbeat_s < self.lease:
            out.append(f"--heartbeat {self.heartbeat_s:g} s must be positive and shorter "
                       f"than the lease ({self.lease:g} s), or the lease expires between "
                       "two heartbeats")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "lease_s": self.lease, "heartbeat_s": self.heartbeat_s,
                "max_tasks": self.max_tasks, "idle_exit_s": self.idle_exit,
                "poll_s": self.poll_s}


@dataclass
class WorkerReport(RunReport):
    """A run report plus what only a worker sees."""

    worker: str = ""
    claimed: int = 0
    took_over: dict[str, str] = field(default_factory=dict)  # task -> previous holder
    lost: dict[str, str] = field(default_factory=dict)  # task -> why our settle lost
    lost_races: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # tasks this worker cannot serve

    def exit_code(self) -> int:
        return 0 if self.status in ("completed", "stopped") else 1

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update({"kind": "worker", "worker": self.worker, "claimed": self.claimed,
                  "took_over": self.took_over, "lost": self.lost,
                  "lost_races": self.lost_races, "skipped": self.skipped})
        return d


class Worker(Runner):
    """``await Worker(store, run_config, worker_config).prepare()``, then ``await
    worker.run()`` -> ``WorkerReport``. ``cancel(reason)`` (a signal handler) stops it:
    running sessions cancelled, their tasks released, ``run.finished`` recorded."""

    def __init__(self, store: EventStore, config: RunConfig, worker: WorkerConfig, *,
                 progress: RunProgress | None = None, app_config: Any = None) -> None:
        if config.run_id is None:
            config.run_id = worker_run_id(worker.name)
        config.lease_seconds = worker.lease
        super().__init__(store, config, progress=progress, app_config=app_config)
        self.worker = worker
        self.report: WorkerReport = WorkerReport(self.run_id, worker=worker.name)
        self._servable: Any = None

    # -- preflight ---------------------------------------------------------------------
    async def prepare(self) -> None:
        """Check the options, the agents, the provider and the workspace root; write
        nothing. Unlike ``run``, an empty backlog is fine: the worker waits for work."""
        from agents.discovery import load_agents
        from orchestrator.backlog import Backlog
        from orchestrator.workspace import git_info

        cfg = self.config
        problems = self.worker.problems()
        if not cfg.project.is_dir():
            problems.append(f"project directory {cfg.project} does not exist")
        if cfg.parallel < 1:
            problems.append(f"--parallel must be at least 1, got {cfg.parallel}")
        if cfg.workspace == "none" and cfg.parallel > 1:
            problems.append("--workspace none shares one directory between tasks: it needs "
                            "--parallel 1")
        if problems:
            raise RunInputError(problems)
        if await self.store.stream_version(f"run-{self.run_id}") is not None:
            raise RunInputError([f"run {self.run_id!r} already exists"])
        self.agents = agents = load_agents(cfg.project)
        providers = self._providers(problems)  # self.tasks is empty: no per-task checks
        if problems:
            raise RunInputError(problems)
        self._servable = self._script_set()
        self.backlog = await Backlog.load(self.store, actor="worker",
                                          correlation_id=self.run_id)
        self._git = await git_info(cfg.project)
        self.exec = await self.build_exec(agents, providers, actor="worker")

    def _script_set(self) -> Any:
        if self.config.provider != "script" or self.config.script is None:
            return None
        from orchestrator.scripts import ScriptSet

        return ScriptSet(self.config.script)

    def cannot_serve(self, task: TaskState) -> str | None:
        """Why this worker must leave ``task`` to others (None: it can work it)."""
        assert self.agents is not None
        if task.agent is None:
            return "names no agent (a lead agent would route it)"
        if task.agent not in self.agents:
            return f"agent {task.agent!r} is not defined here"
        if self._servable is not None:
            problems = self._servable.check([task])
            if problems:
                return str(problems[0])
        return None

    # -- the run -----------------------------------------------------------------------
    async def _started(self) -> None:
        from eventstore.model import NO_STREAM, NewEvent

        assert self.agents is not None and self.exec is not None
        agents = {}
        for name in self.agents.names():
            d = self.agents.get(name)
            agents[name] = {"definition_hash": d.definition_hash,
                            "source": str(d.source) if d.source else None, "model": d.model}
        data: dict[str, Any] = {
            "run_id": self.run_id, "kind": "worker", "worker": self.run_id,
            "worker_name": self.worker.name, "worker_config": self.worker.to_dict(),
            "tasks": [], "config": self.config.to_dict(),
            "config_digest": self.config.digest(), "agents": agents,
            "cwd": str(self.config.project), "git": self._git,
            "workspace_mode": self.exec.workspaces.mode, "provider": self.config.provider,
            "host": socket.gethostname(), "pid": os.getpid(), "version": _version()}
        await self.store.append(f"run-{self.run_id}", [NewEvent(
            type="run.started", data=data, actor="worker", correlation_id=self.run_id)],
            NO_STREAM)
        log.info("worker started", run_id=self.run_id, lease_s=self.worker.lease,
                 heartbeat_s=self.worker.heartbeat_s)
        if self.progress is not None:
            self.progress.note(f"worker {self.worker.name} (run {self.run_id}): lease "
                               f"{self.worker.lease:g} s, heartbeat "
                               f"{self.worker.heartbeat_s:g} s, provider "
                               f"{self.config.provider}, workspaces: "
                               f"{self.exec.workspaces.mode}")

    def _quota_left(self) -> bool:
        return self.worker.max_tasks is None or self.report.claimed < self.worker.max_tasks

    async def _dispatch(self) -> None:
        assert self.backlog is not None
        backlog = self.backlog
        lease = timedelta(seconds=self.worker.lease)
        not_before: dict[str, float] = {}  # our own backoff before retrying a task
        idle_since = time.monotonic()
        poll = self.worker.poll_s
        while True:
            self._check_store()
            await backlog.refresh()
            if self._stop is None and self._quota_left():
                await self._claim_some(lease, not_before)
            if self._running:
                idle_since = time.monotonic()
            else:
                if self._stop is not None:
                    break
                if not self._quota_left():
                    self._stop = ("completed", f"max tasks reached ({self.worker.max_tasks})")
                    break
                idle = time.monotonic() - idle_since
                if self.worker.idle_exit is not None and idle >= self.worker.idle_exit:
                    self._stop = ("completed", "nothing left to claim" if not
                                  self.worker.idle_exit else
                                  f"idle for {self.worker.idle_exit:g} s: nothing to claim")
                    break
                wait = poll if self.worker.idle_exit is None else \
                    min(poll, self.worker.idle_exit - idle)
                await self._sleep(wait)
                continue
            full = len(self._running) >= self.config.parallel or not self._quota_left()
            await self._wait_and_settle(None if full else poll, not_before)

    async def _claim_some(self, lease: timedelta, not_before: dict[str, float]) -> None:
        """Claim claimable tasks (ready ones, or ones whose lease expired) up to
        ``parallel``; a lost race is normal: the next candidate is tried."""
        from orchestrator.backlog import TaskStateError

        assert self.backlog is not None
        now, mono = datetime.now(UTC), time.monotonic()
        busy = {tid for tid, _ in self._running.values()}
        for task in self._candidates(now):
            if len(self._running) >= self.config.parallel or not self._quota_left():
                return
            if task.id in busy or task.id in self.report.skipped \
                    or not_before.get(task.id, 0.0) > mono:
                continue
            why = self.cannot_serve(task)
            if why is not None:  # decided once per task and process
                self.report.skipped[task.id] = why
                log.warning("task left to other workers", task=task.id, reason=why)
                continue
            previous = task.worker if task.status == "claimed" else None
            try:
                claimed = await self.backlog.claim(task.id, self.run_id, lease=lease, now=now)
            except TaskStateError:  # its dependencies changed under us
                continue
            if claimed is None:
                self.report.lost_races += 1
                continue
            not_before.pop(task.id, None)
            self.report.claimed += 1
            if previous is not None and previous != self.run_id:
                self.report.took_over[task.id] = previous
                log.info("took over an expired claim", task=task.id, previous=previous)
            self.pending.add(task.id)
            handle = Cancel()
            fut = asyncio.ensure_future(self._attempt(claimed, handle, lease))
            self._running[fut] = (task.id, handle)

    def _candidates(self, now: datetime) -> list[TaskState]:
        """Claimable tasks in backlog order (priority, then creation). Once this worker
        has lost a race (other workers are claiming too), it starts at a random one of
        the first few equally urgent tasks, so that a fleet does not queue up behind the
        same task: fewer lost races, same priorities."""
        assert self.backlog is not None
        tasks = self.backlog.claimable(now)
        if self.report.lost_races and len(tasks) > 1:
            top = [t for t in tasks[:SPREAD] if t.priority == tasks[0].priority]
            k = random.randrange(len(top))
            tasks = top[k:] + top[:k] + tasks[len(top):]
        return tasks

    def _heartbeat_every(self, lease: timedelta) -> float:
        return self.worker.heartbeat_s

    async def _settle(self, task: TaskState, outcome: TaskOutcome,
                      not_before: dict[str, float]) -> None:
        """Settle as ``run`` does; when the claim is gone (taken over after our lease
        expired, or settled by someone else) the settle loses: recorded, not counted."""
        from eventstore.errors import WrongExpectedVersion
        from orchestrator.backlog import TaskStateError

        assert self.backlog is not None
        gone = await self._not_ours(task.id) if outcome.released else None
        if gone is not None:  # stopped because the lease was lost: nothing to release
            self.report.add(outcome)
            await self._claim_lost(task, outcome, gone)
        else:
            try:
                await super()._settle(task, outcome, not_before)
            except (TaskStateError, WrongExpectedVersion) as exc:
                await self._claim_lost(task, outcome, str(exc))
        self.pending.discard(task.id)  # a retry goes back to the shared backlog

    async def _not_ours(self, task_id: str) -> str | None:
        """Why the claim on ``task_id`` is no longer ours (None: we still hold it)."""
        assert self.backlog is not None
        await self.backlog.refresh()
        now = self.backlog.get(task_id)
        if now.status == "claimed" and now.worker == self.run_id:
            return None
        held = f"claimed by {now.worker!r}" if now.status == "claimed" else now.status
        return f"task {task_id!r} is {held}, no longer held by {self.run_id!r}"

    async def _claim_lost(self, task: TaskState, outcome: TaskOutcome, why: str) -> None:
        """Our settle lost (the claim was taken over, or settled by someone else): log it
        and record ``worker.claim_lost`` on our run; the task's stream is not touched."""
        from eventstore.model import NewEvent

        assert self.backlog is not None
        now = self.backlog.get(task.id)
        self.report.lost[task.id] = why
        log.warning("claim lost: outcome not recorded on the task", task=task.id,
                    status=outcome.status, held_by=now.worker, task_status=now.status,
                    reason=why)
        await self.store.append(f"run-{self.run_id}", [NewEvent(
            type="worker.claim_lost", actor="worker", correlation_id=self.run_id,
            causation_id=outcome.dispatched_id,
            data={"task_id": task.id, "session_id": outcome.session_id,
                  "attempt": outcome.attempt, "outcome": outcome.status,
                  "task_status": now.status, "held_by": now.worker, "reason": why})])
        if self.progress is not None:
            self.progress.finished(task.id, outcome, "claim lost: not recorded")

    def _close_report(self) -> None:
        rep = self.report
        rep.duration_s = time.monotonic() - rep.started
        self.pending.clear()
        if self._stop is not None and self._stop[0] != "cancelled":
            rep.status, rep.reason = self._stop
        elif self._stop is not None:
            rep.status, rep.reason = "stopped", self._stop[1]
        else:
            rep.status = "completed"
