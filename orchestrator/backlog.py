"""The backlog: tasks event-sourced in ``task-<id>`` streams, and the read model over them.

Why events and not a table: the backlog is part of the audit trail (who created, claimed,
finished or failed a task, and when), several processes share it through any store
backend, and optimistic concurrency on a task's own stream is all the locking a claim
needs: two workers that read the same version both append ``task.claimed`` with
``expected_version=<that version>``; the store lets exactly one through.

Events (data fields):

* ``task.created``   id, title, prompt, agent (None: the lead routes it), depends_on,
  priority, acceptance_criteria, labels, source
* ``task.updated``   the changed fields among the above (re-import of an edited file)
* ``task.claimed``   worker, lease_until, attempt (a renewal by the holder is another
  ``task.claimed``)
* ``task.released``  worker, reason (back to open)
* ``task.completed`` result, worker
* ``task.failed``    error, attempt, worker, retry (retry=True puts it back to open),
  review (the verdict that rejected the attempt, when a reviewer did)
* ``task.cancelled`` reason

``Backlog`` folds those into ``TaskState`` per task. ``ready()`` = open tasks whose
dependencies are all completed, by priority (lower number first, 0 most urgent, as in
beads' P0) then creation (position of ``task.created``).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.taskgraph import find_cycle, topological, unknown_dependencies

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from eventstore.model import NewEvent, RecordedEvent

STREAM_PREFIX = "task-"
TASK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,119}\Z")
DEFAULT_PRIORITY = 2
#: Fields of ``task.created`` that define a task's content; a re-import compares these.
CONTENT_FIELDS = ("title", "prompt", "agent", "depends_on", "priority",
                  "acceptance_criteria", "labels")
#: uuid5 namespace of deterministic event ids (re-imports are idempotent retries).
EVENT_NS = uuid.UUID("5b0c1c9e-7f59-4d0e-9a59-6f7263686573")

Status = Literal["open", "claimed", "completed", "failed", "cancelled"]
#: What ``task list`` shows: ``open`` split into ready/blocked.
DISPLAY_STATUSES = ("ready", "blocked", "claimed", "completed", "failed", "cancelled")


class BacklogError(Exception):
    """Base of the backlog's own errors; the message names the task (and file, if any)."""


class TaskValidationError(BacklogError, ValueError):
    """Tasks that cannot be added; nothing was appended. ``problems`` has one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")


class TaskNotFound(BacklogError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class TaskStateError(BacklogError):
    """The task is not in a state that allows this (e.g. completing a cancelled task)."""


class ClaimLost(TaskStateError):
    """Another worker holds (or just took) the task."""


def stream_of(task_id: str) -> str:
    return STREAM_PREFIX + task_id


def task_id_problem(task_id: object) -> str | None:
    if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id):
        return (f"invalid task id {task_id!r}: 1-120 letters, digits and _ . : @ + = -, "
                "starting with a letter or digit")
    return None


def event_id(*parts: object) -> str:
    """A deterministic event id, so that re-running the same import is a retry."""
    return str(uuid.uuid5(EVENT_NS, "|".join(str(p) for p in parts)))


class TaskSpec(BaseModel):
    """A task as it is created. ``origin`` (where it came from, for error messages) is
    not stored; ``source`` (file, key/line, kind) is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    title: str = Field(min_length=1)
    prompt: str = ""
    agent: str | None = None
    depends_on: tuple[str, ...] = ()
    priority: int = DEFAULT_PRIORITY
    acceptance_criteria: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    source: dict[str, Any] = Field(default_factory=dict)
    origin: str | None = Field(default=None, exclude=True)

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        problem = task_id_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("agent")
    @classmethod
    def _blank_agent(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None

    def content(self) -> dict[str, Any]:
        data = self.model_dump(include=set(CONTENT_FIELDS), mode="json")
        return {k: data[k] for k in CONTENT_FIELDS}

    def digest(self) -> str:
        text = json.dumps(self.content(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def where(self) -> str:
        return f"{self.origin}: task {self.id!r}" if self.origin else f"task {self.id!r}"


@dataclass
class TaskState:
    """One task folded from its stream."""

    id: str
    title: str
    prompt: str
    agent: str | None
    depends_on: tuple[str, ...]
    priority: int
    acceptance_criteria: tuple[str, ...]
    labels: tuple[str, ...]
    source: dict[str, Any]
    created_position: int
    created_at: datetime
    status: Status = "open"
    version: int = 0
    updated_at: datetime | None = None
    worker: str | None = None
    lease_until: datetime | None = None
    attempts: int = 0
    result: Any = None
    error: str | None = None
    #: the last review of an attempt (``task.failed``/``task.completed`` ``review``): a
    #: rejection's feedback goes into the next attempt's prompt
    review: dict[str, Any] | None = None

    def spec(self) -> TaskSpec:
        return TaskSpec(id=self.id, title=self.title, prompt=self.prompt, agent=self.agent,
                        depends_on=self.depends_on, priority=self.priority,
                        acceptance_criteria=self.acceptance_criteria, labels=self.labels,
                        source=self.source)

    def content(self) -> dict[str, Any]:
        return self.spec().content()

    def lease_expired(self, now: datetime) -> bool:
        return self.status == "claimed" and (self.lease_until is None or self.lease_until <= now)

    def to_json(self, display_status: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "status": display_status or self.status,
            "agent": self.agent, "priority": self.priority, "depends_on": list(self.depends_on),
            "acceptance_criteria": list(self.acceptance_criteria), "labels": list(self.labels),
            "prompt": self.prompt, "source": self.source, "version": self.version,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "worker": self.worker,
            "lease_until": self.lease_until.isoformat() if self.lease_until else None,
            "attempts": self.attempts, "result": self.result, "error": self.error,
        }


@dataclass
class ImportReport:
    """What ``Backlog.add`` did (or, with ``dry_run``, would do)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"created": self.created, "updated": self.updated, "completed": self.completed,
                "unchanged": self.unchanged, "warnings": self.warnings, "dry_run": self.dry_run}


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Backlog:
    """Read model of every ``task-*`` stream, plus the commands that append to them.

    Build with ``await Backlog.load(store)``; ``refresh()`` reads only what was appended
    since (a cursor on the global position). Each task remembers its stream version, so
    events already folded are skipped whichever path (global read or one stream) brings
    them again.
    """

    def __init__(self, store: EventStore, *, actor: str = "orchestrator",
                 correlation_id: str | None = None) -> None:
        self.store = store
        self.actor = actor
        #: The run (or worker) whose lifecycle events these are: set by ``orchestrail run``
        #: so that claims, completions and failures show up in that run's trail.
        self.correlation_id = correlation_id
        self._tasks: dict[str, TaskState] = {}
        self._cursor: int | None = None

    @classmethod
    async def load(cls, store: EventStore, *, actor: str = "orchestrator",
                   correlation_id: str | None = None) -> Backlog:
        backlog = cls(store, actor=actor, correlation_id=correlation_id)
        await backlog.refresh()
        return backlog

    # -- reading ----------------------------------------------------------------------

    async def refresh(self) -> None:
        from eventstore.model import Query

        async for ev in self.store.read(Query(stream_prefix=STREAM_PREFIX), after=self._cursor):
            self.apply(ev)
            self._cursor = ev.position

    async def _sync(self, task_id: str) -> TaskState:
        """Bring one task up to date from its own stream (cheaper than a global read)."""
        state = self._tasks.get(task_id)
        start = 0 if state is None else state.version + 1
        async for ev in self.store.read_stream(stream_of(task_id), from_version=start):
            self.apply(ev)
        return self.get(task_id)

    def apply(self, ev: RecordedEvent) -> None:
        """Fold one event. Unknown ``task.*`` types are ignored (newer writers may add some)."""
        if not ev.stream.startswith(STREAM_PREFIX):
            return
        task_id = ev.stream[len(STREAM_PREFIX):]
        d = ev.data
        state = self._tasks.get(task_id)
        if ev.type == "task.created":
            if state is not None:
                return
            self._tasks[task_id] = TaskState(
                id=task_id, title=str(d.get("title", "")), prompt=str(d.get("prompt", "")),
                agent=d.get("agent"), depends_on=tuple(d.get("depends_on") or ()),
                priority=int(d.get("priority", DEFAULT_PRIORITY)),
                acceptance_criteria=tuple(d.get("acceptance_criteria") or ()),
                labels=tuple(d.get("labels") or ()), source=dict(d.get("source") or {}),
                created_position=ev.position, created_at=ev.occurred_at, version=ev.version)
            return
        if state is None or ev.version <= state.version:
            return
        state.version = ev.version
        state.updated_at = ev.occurred_at
        if ev.type == "task.updated":
            for key in CONTENT_FIELDS:
                if key in d:
                    value = d[key]
                    if key in ("depends_on", "acceptance_criteria", "labels"):
                        value = tuple(value or ())
                    setattr(state, key, value)
            if "source" in d:
                state.source = dict(d["source"] or {})
        elif ev.type == "task.claimed":
            state.status = "claimed"
            state.worker = d.get("worker")
            state.lease_until = _parse_time(d.get("lease_until"))
            state.attempts = int(d.get("attempt", state.attempts))
        elif ev.type == "task.released":
            state.status, state.worker, state.lease_until = "open", None, None
        elif ev.type == "task.completed":
            state.status, state.result, state.lease_until = "completed", d.get("result"), None
        elif ev.type == "task.failed":
            state.error = d.get("error")
            if isinstance(d.get("review"), dict):
                state.review = d["review"]
            state.attempts = int(d.get("attempt", state.attempts))
            state.status = "open" if d.get("retry") else "failed"
            state.worker, state.lease_until = None, None
        elif ev.type == "task.cancelled":
            state.status, state.lease_until = "cancelled", None

    def get(self, task_id: str) -> TaskState:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise TaskNotFound(f"no task {task_id!r} in the backlog") from None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def tasks(self) -> list[TaskState]:
        """Every task in creation order."""
        return sorted(self._tasks.values(), key=lambda t: t.created_position)

    def deps_done(self, task: TaskState) -> bool:
        return all(d in self._tasks and self._tasks[d].status == "completed"
                   for d in task.depends_on)

    def display_status(self, task: TaskState) -> str:
        if task.status == "open":
            return "ready" if self.deps_done(task) else "blocked"
        return task.status

    def ready(self) -> list[TaskState]:
        """Open tasks whose dependencies are all completed: priority, then creation."""
        out = [t for t in self._tasks.values() if t.status == "open" and self.deps_done(t)]
        return sorted(out, key=lambda t: (t.priority, t.created_position))

    def claimable(self, now: datetime | None = None) -> list[TaskState]:
        """``ready()`` plus claimed tasks whose lease ran out (their worker died)."""
        now = now or datetime.now(UTC)
        out = [t for t in self._tasks.values()
               if (t.status == "open" or t.lease_expired(now)) and self.deps_done(t)]
        return sorted(out, key=lambda t: (t.priority, t.created_position))

    async def history(self, task_id: str) -> list[RecordedEvent]:
        events = [ev async for ev in self.store.read_stream(stream_of(task_id))]
        if not events:
            raise TaskNotFound(f"no task {task_id!r} in the backlog")
        return events

    # -- validation and creation --------------------------------------------------------

    def validate(self, specs: Sequence[TaskSpec],
                 known_agents: Collection[str] | None = None) -> list[str]:
        """Every problem of adding ``specs`` to this backlog (empty list: fine).

        Existing tasks with the same id are re-imports (compared later), not duplicates;
        the graph checked for cycles is the backlog with the incoming versions replacing
        the stored ones.
        """
        problems: list[str] = []
        seen: dict[str, TaskSpec] = {}
        for spec in specs:
            if spec.id in seen:
                first = seen[spec.id]
                problems.append(f"{spec.where()}: duplicate task id (first defined at "
                                f"{first.origin or 'an earlier entry'})")
                continue
            seen[spec.id] = spec
            if spec.id in spec.depends_on:
                problems.append(f"{spec.where()}: depends on itself")
            if spec.agent is not None and known_agents is not None \
                    and spec.agent not in known_agents:
                known = ", ".join(sorted(known_agents)) or "none discovered"
                problems.append(f"{spec.where()}: unknown agent {spec.agent!r} "
                                f"(known: {known})")
        graph: dict[str, Sequence[str]] = {t.id: t.depends_on for t in self._tasks.values()}
        graph.update({s.id: s.depends_on for s in seen.values()})
        for task, dep in unknown_dependencies(graph, seen):
            problems.append(f"{seen[task].where()}: depends on unknown task {dep!r}")
        cycle = find_cycle({k: [d for d in v if d != k] for k, v in graph.items()})
        if cycle:
            involved = [seen[c].where() for c in cycle[:-1] if c in seen]
            at = f"{involved[0]}: " if involved else ""
            problems.append(f"{at}dependency cycle {' -> '.join(cycle)}")
        return problems

    async def add(self, specs: Sequence[TaskSpec], *, known_agents: Collection[str] | None = None,
                  done: Collection[str] = (), done_result: Any = None,
                  dry_run: bool = False) -> ImportReport:
        """Create (or update) tasks after validating all of them; nothing is appended when
        any is invalid. ``done``: ids to mark completed right away (checked story tasks).

        Re-adding a task with identical content changes nothing; changed content of a task
        that is still open becomes ``task.updated``; a changed task that already started
        (claimed, completed, failed, cancelled) is left alone with a warning, since the
        work it describes may already be done.
        """
        await self.refresh()
        problems = self.validate(specs, known_agents)
        if problems:
            raise TaskValidationError(problems)
        by_id = {s.id: s for s in specs}
        graph = {s.id: list(s.depends_on) for s in specs}
        order = topological([s.id for s in specs], graph)
        report = ImportReport(dry_run=dry_run)
        plan: list[tuple[str, list[NewEvent], int | None]] = []
        for task_id in order:
            spec = by_id[task_id]
            events, expected = self._plan_one(spec, task_id in done, done_result, report)
            if events:
                plan.append((task_id, events, expected))
        if dry_run:
            return report
        from eventstore.model import NO_STREAM

        for task_id, events, expected in plan:
            await self.store.append(stream_of(task_id), events,
                                    NO_STREAM if expected is None else expected)
            await self._sync(task_id)
        return report

    def _plan_one(self, spec: TaskSpec, done: bool, done_result: Any,
                  report: ImportReport) -> tuple[list[NewEvent], int | None]:
        from eventstore.model import NewEvent

        existing = self._tasks.get(spec.id)
        events: list[NewEvent] = []
        digest = spec.digest()
        if existing is None:
            data = {"id": spec.id, **spec.content(), "source": spec.source}
            events.append(NewEvent(type="task.created", data=data, actor=self.actor,
                                   id=event_id(spec.id, "created", digest)))
            report.created.append(spec.id)
        else:
            old = existing.content()
            new = spec.content()
            changed = {k: v for k, v in new.items() if old.get(k) != v}
            if not changed:
                report.unchanged.append(spec.id)
            elif existing.status == "open":
                events.append(NewEvent(
                    type="task.updated", data={**changed, "source": spec.source},
                    actor=self.actor,
                    id=event_id(spec.id, existing.version + 1, "updated", digest)))
                report.updated.append(spec.id)
            else:
                report.warnings.append(
                    f"{spec.where()}: changed, but the task is already {existing.status}; "
                    "not updated (add it under a new id to redo the work)")
        if done and (existing is None or existing.status in ("open", "claimed")):
            at = (0 if existing is None else existing.version + 1) + len(events)
            events.append(NewEvent(
                type="task.completed",
                data={"result": done_result, "worker": None}, actor=self.actor,
                id=event_id(spec.id, at, "completed")))
            report.completed.append(spec.id)
        return events, (None if existing is None else existing.version)

    # -- the lifecycle ------------------------------------------------------------------

    async def _append(self, task: TaskState, event_type: str, data: dict[str, Any]) -> None:
        """Append one event at the version we folded; a concurrent writer makes it fail."""
        from eventstore.errors import WrongExpectedVersion
        from eventstore.model import NewEvent

        ev = NewEvent(type=event_type, data=data, actor=self.actor,
                      correlation_id=self.correlation_id)
        try:
            await self.store.append(stream_of(task.id), [ev], task.version)
        except WrongExpectedVersion:
            await self._sync(task.id)
            raise
        await self._sync(task.id)

    async def claim(self, task_id: str, worker: str, *, lease: timedelta = timedelta(minutes=5),
                    now: datetime | None = None) -> TaskState | None:
        """Claim a ready task (or one whose lease expired). None when another worker got it
        first (a lost race is normal for workers, not an error)."""
        from eventstore.errors import WrongExpectedVersion

        now = now or datetime.now(UTC)
        task = await self._sync(task_id)
        if task.status == "claimed" and task.worker == worker and not task.lease_expired(now):
            return task
        if not (task.status == "open" or task.lease_expired(now)):
            return None
        if not self.deps_done(task):
            await self.refresh()
            if not self.deps_done(task):
                raise TaskStateError(f"task {task_id!r} is blocked by unfinished dependencies "
                                     f"{', '.join(task.depends_on)}")
        data: dict[str, Any] = {"worker": worker, "lease_until": (now + lease).isoformat(),
                                "attempt": task.attempts + 1}
        if task.status == "claimed" and task.worker != worker:  # its holder went silent
            data["took_over_from"] = task.worker
            data["expired_lease_until"] = (task.lease_until.isoformat()
                                           if task.lease_until else None)
        try:
            await self._append(task, "task.claimed", data)
        except WrongExpectedVersion:
            return None
        return self.get(task_id)

    async def claim_next(self, worker: str, *, lease: timedelta = timedelta(minutes=5),
                         now: datetime | None = None) -> TaskState | None:
        """Claim the first claimable task, trying the next one after each lost race."""
        await self.refresh()
        for task in self.claimable(now):
            got = await self.claim(task.id, worker, lease=lease, now=now)
            if got is not None:
                return got
        return None

    def _holder_check(self, task: TaskState, worker: str | None, what: str) -> None:
        """A worker may settle a task only while it holds the claim: a worker whose lease
        was taken over (or whose task went back to open) loses, whatever it did."""
        if worker is not None and task.status != "claimed" and task.status != "open":
            raise ClaimLost(f"cannot {what} task {task.id!r} as {worker!r}: it is already "
                            f"{task.status}")
        if task.status in ("completed", "cancelled", "failed"):
            raise TaskStateError(f"cannot {what} task {task.id!r}: it is {task.status}")
        if worker is not None and task.worker != worker:
            held = f"claimed by {task.worker!r}" if task.status == "claimed" else "open again"
            raise ClaimLost(f"cannot {what} task {task.id!r}: {held}, not {worker!r}")

    async def renew(self, task_id: str, worker: str, *, lease: timedelta = timedelta(minutes=5),
                    now: datetime | None = None) -> TaskState:
        """Extend the holder's lease (a heartbeat): another ``task.claimed`` by the holder."""
        now = now or datetime.now(UTC)
        task = await self._sync(task_id)
        if task.status != "claimed" or task.worker != worker:
            raise ClaimLost(f"cannot renew task {task_id!r}: held by {task.worker!r} "
                            f"({task.status}), not {worker!r}")
        await self._append(task, "task.claimed", {
            "worker": worker, "lease_until": (now + lease).isoformat(),
            "attempt": task.attempts})
        return self.get(task_id)

    async def release(self, task_id: str, worker: str | None = None, reason: str = "") -> None:
        task = await self._sync(task_id)
        self._holder_check(task, worker, "release")
        await self._append(task, "task.released", {"worker": worker or task.worker,
                                                   "reason": reason})

    async def complete(self, task_id: str, result: Any = None, *,
                       worker: str | None = None) -> None:
        task = await self._sync(task_id)
        self._holder_check(task, worker, "complete")
        await self._append(task, "task.completed", {"result": result,
                                                    "worker": worker or task.worker})

    async def fail(self, task_id: str, error: str, *, worker: str | None = None,
                   retry: bool = False, review: dict[str, Any] | None = None) -> None:
        """``review``: the reviewer's verdict that rejected the attempt (kept on the task:
        the next attempt's prompt carries its feedback)."""
        task = await self._sync(task_id)
        self._holder_check(task, worker, "fail")
        data: dict[str, Any] = {"error": error, "attempt": max(task.attempts, 1),
                                "worker": worker or task.worker, "retry": retry}
        if review is not None:
            data["review"] = review
        await self._append(task, "task.failed", data)

    async def cancel(self, task_id: str, reason: str = "") -> None:
        task = await self._sync(task_id)
        if task.status in ("completed", "cancelled"):
            raise TaskStateError(f"cannot cancel task {task_id!r}: it is {task.status}")
        await self._append(task, "task.cancelled", {"reason": reason})

