"""``orchestrail run --lead [AGENT]``: a lead agent runs the backlog instead of the fixed
dispatcher (the orchestrator mode of Claude Code's CLAUDE.md: a lead that only
dispatches, one task at a time, and reviews each result).

The lead is one session (``session-<id>``, caused by ``lead.started`` on the run stream)
whose tools are ``Agent`` plus read-only ones (``orchestrator.roles``). Its first message
is the backlog (``lead_prompt``): every task of the run with id, status, agent,
dependencies, acceptance criteria and prompt, and the subagents it may dispatch to. It
sees the state change through its tool results: each ``Agent`` call returns the
subagent's final answer, the review verdict (with ``--review``) and the backlog as it is
now (``backlog_status``).

Each ``Agent`` call goes through ``LeadRun.delegate``:

1. it is mapped onto a task: the first task id found in the call's ``description``, else
   in its ``prompt`` after the word "task" (``task a``, ``Task id: a``; whole ids only, a
   short id is also a plain word); no id -> an ad-hoc task is created on the backlog
   (id ``adhoc-<run>-<n>``, label ``ad-hoc``, the call's prompt and agent);
2. the task must be ready (open, dependencies completed) and the call's ``subagent_type``
   must be the task's agent when it has one (a task without an agent is routed by the
   lead's choice); otherwise the tool result is an error saying why;
3. the task is claimed and run through ``execute_task`` with a ``Dispatch``:
   ``task.dispatched`` is caused by the lead's ``tool.requested`` and names the lead's
   session, the child session has ``parent_session`` = the lead's session and its own
   workspace; then it is settled exactly as the fixed dispatcher settles (the runner's
   ``_settle``: the review, retries with backoff, ``task.completed``/``task.failed``), and
   a retry is dispatched again inside the same call.

Children get the same delegate, so a child whose definition has ``Agent`` can delegate
further, down to ``MAX_DEPTH`` (the lead is depth 0). When the lead's session ends, the run
ends: tasks it never dispatched are reported as not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.definition import AgentDefinition
    from agents.tools.base import DelegateRequest
    from orchestrator.backlog import TaskState
    from orchestrator.execute import Cancel, TaskOutcome
    from orchestrator.roles import RoleProviders
    from orchestrator.runner import Runner

DEFAULT_LEAD = "orchestrator"
#: depth of the deepest session a lead's delegation may start (lead 0, its subagents 1)
MAX_DEPTH = 2
PROMPT_CAP = 1500  # characters of each task's prompt shown in the lead's backlog listing
ANSWER_CAP = 6000  # characters of a subagent's final answer returned to the lead
_ID_CHARS = "A-Za-z0-9_.:@+=-"


def lead_prompt(runner: Runner, agents: list[AgentDefinition]) -> str:
    """The lead's first message: the run's backlog and the subagents it may use."""
    assert runner.backlog is not None
    lines = [f"Run the backlog of run {runner.run_id}. Dispatch the tasks below to "
             "subagents with the Agent tool, one at a time, in dependency order; wait for "
             "each result and check it before dispatching the next.", "",
             "Subagents you can dispatch to (subagent_type):"]
    lines += [f"- {d.name}: {' '.join(d.description.split())}" for d in agents]
    lines += ["", "Tasks:"]
    for t in runner.tasks:
        lines += _task_lines(runner, t)
    lines += ["", "How to dispatch: call Agent with subagent_type = the task's agent (a task "
              "with agent '(none)' is yours to route: pick the best-suited subagent), "
              "description = the task id first, then a few words (e.g. "
              f"\"{runner.tasks[0].id if runner.tasks else 'task-1'}: implement the "
              "interface\"), and a self-contained prompt (the subagent sees only that "
              "prompt and the task's acceptance criteria). A call that names no task id "
              "creates an ad-hoc task. Each call returns the subagent's final answer, the "
              "review verdict when reviews are on, and the backlog as it is now. A failed "
              "task stays failed (its retries already happened); tasks that depend on it "
              "cannot run.",
              "When nothing is left that can run, answer with a short summary of what was "
              "done, task by task."]
    return "\n".join(lines)


def _task_lines(runner: Runner, t: TaskState) -> list[str]:
    assert runner.backlog is not None
    status = runner.backlog.display_status(t)
    out = [f"- {t.id} [{status}] agent: {t.agent or '(none)'}, priority {t.priority}"
           + (f", depends on: {', '.join(t.depends_on)}" if t.depends_on else ""),
           f"  title: {t.title}"]
    if t.acceptance_criteria:
        out.append("  acceptance criteria: " + "; ".join(t.acceptance_criteria))
    if t.prompt and t.prompt != t.title:
        text = " ".join(t.prompt.split())
        out.append("  prompt: " + (text[:PROMPT_CAP] + " [...]" if len(text) > PROMPT_CAP
                                   else text))
    return out


def backlog_status(runner: Runner, extra: set[str]) -> str:
    """One paragraph: the run's tasks by state (what the lead sees after every call)."""
    assert runner.backlog is not None
    groups: dict[str, list[str]] = {}
    ids = [t.id for t in runner.tasks] + sorted(extra - {t.id for t in runner.tasks})
    for tid in ids:
        t = runner.backlog.get(tid)
        st = runner.backlog.display_status(t)
        label = tid if st != "ready" else f"{tid} ({t.agent or 'no agent: route it'})"
        if st == "blocked":
            waits = [d for d in t.depends_on if d in runner.backlog
                     and runner.backlog.get(d).status != "completed"]
            label = f"{tid} (waits for {', '.join(waits)})"
        groups.setdefault(st, []).append(label)
    order = ("ready", "blocked", "claimed", "completed", "failed", "cancelled")
    parts = [f"{st}: {', '.join(groups[st])}" for st in order if groups.get(st)]
    return "Backlog now: " + ("; ".join(parts) if parts else "empty") + "."


def find_task_id(text: str, ids: list[str], *, after_word: bool = False) -> str | None:
    """The first whole task id in ``text`` (longest first at the same place);
    ``after_word``: only where it follows the word "task" (``task a``, ``Task id: a``),
    which is how a prompt (free text, where a short id is also a word) names one."""
    best: tuple[int, int, str] | None = None
    lead_in = r"\btask(?:[ _-]?id)?\s*[:#=]?\s*[`'\"]?" if after_word else ""
    for tid in ids:
        pattern = (rf"{lead_in}(?<![{_ID_CHARS}]){re.escape(tid)}(?![A-Za-z0-9_@+=-])"
                   r"(?![.:][A-Za-z0-9])")
        m = re.search(pattern, text, re.IGNORECASE if after_word else 0)
        if m is not None:
            key = (m.start(), -len(tid), tid)
            if best is None or key < best:
                best = key
    return best[2] if best else None


class LeadRun:
    """Runs a ``Runner``'s backlog through a lead session (``await LeadRun(...).run()``)."""

    def __init__(self, runner: Runner, definition: AgentDefinition,
                 providers: RoleProviders) -> None:
        self.runner = runner
        self.definition = definition
        self.providers = providers
        self.session_id = ""
        self.adhoc: set[str] = set()
        #: the attempts running for Agent calls, outermost first (a child that delegates
        #: puts its own call's attempt on top)
        self._attempts: list[Cancel] = []
        self._calls = 0  # Agent calls in progress (an attempt, its review, a retry wait)
        self._lead: Cancel | None = None
        self._stopping: str | None = None
        self._wake = asyncio.Event()
        self._session: Any = None
        self._counted: tuple[dict[str, int], float] = ({}, 0.0)
        self._unpriced_noted = False
        #: set by ``orchestrail resume`` (``orchestrator.resume.ResumeRunner``): the lead
        #: session to continue instead of starting one, and the resumer that finds and
        #: continues what an ``Agent`` call in flight at the crash had started
        self.resume_session: str | None = None
        self.resumer: Any = None

    def cancel(self, reason: str) -> None:
        """Stop the lead and whatever it is waiting for (Ctrl-C, a store failure).

        One thing at a time, deepest first: the running attempt; when its call returns,
        the next one out; the lead last (a review in progress is stopped by the runner).
        Stopping an outer session while an inner one is still recording its end would
        lose that end, so every session records its own end before the run does."""
        self._stopping = reason
        self._wake.set()
        self._cancel_next()

    def _cancel_next(self) -> None:
        reason = self._stopping or "cancelled"
        if self._attempts:
            self._attempts[-1].cancel("cancelled", reason)
        elif self._calls == 0 and self._lead is not None:
            self._lead.cancel("cancelled", reason)

    async def run(self) -> None:
        from agents.loop import Budgets
        from eventstore.model import NewEvent
        from orchestrator.execute import _new_id
        from orchestrator.roles import role_session
        from orchestrator.rolescripts import LEAD_KEY

        r = self.runner
        cfg, agents = r.exec, r.agents
        assert cfg is not None and agents is not None
        d = self.definition
        if self.resume_session is not None:
            resumed = await self._resumed()
            if resumed is not None:
                await self._supervised(*resumed)
            return
        self.session_id = sid = _new_id()
        subagents = [agents.get(n) for n in agents.names() if n != d.name]
        started = NewEvent(type="lead.started", actor=cfg.actor, correlation_id=r.run_id,
                           data={"session_id": sid, "agent": d.name,
                                 "definition_hash": d.definition_hash,
                                 "tasks": [t.id for t in r.tasks], "max_depth": MAX_DEPTH,
                                 "subagents": [a.name for a in subagents]})
        await cfg.store.append(f"run-{r.run_id}", [started])
        budgets = Budgets(max_turns=d.max_turns, max_tokens=r.config.run_max_tokens,
                          max_cost_usd=r.config.run_max_usd)
        provider = self.providers.provider([LEAD_KEY], d.name, "lead", cache_as=LEAD_KEY)
        session = role_session(cfg, d, lead_prompt(r, subagents), provider=provider,
                               workspace=cfg.project, session_id=sid,
                               causation_id=started.id, budgets=budgets,
                               delegate=self.delegate, started_extra={"role": "lead"},
                               progress_key="lead")
        session.ctx.max_depth = MAX_DEPTH
        await self._supervised(session, None)

    async def _supervised(self, session: Any, log: Any) -> None:
        """Run the lead's session (``log``: continue it, ``agents.resume``) to its end."""
        from orchestrator.execute import Cancel, supervise

        self._session = session
        self._lead = handle = Cancel()

        def stop_as(st: str, why: str) -> None:
            session.cancelled_as = (st, why)

        try:
            result, stopped = await supervise(session.run(resume=log), stop_as, None, handle,
                                              None, 60.0)
        finally:
            self._lead = None
        self._count()
        if stopped is not None:
            self._ended(*stopped)
        else:
            self._ended(result.status, result.error or result.status)

    def _ended(self, status: str, why: str) -> None:
        r = self.runner
        if status != "completed" and r._stop is None:
            r._stop = ("failed", f"the lead session {self.session_id} ended {status}: {why}")

    async def _resumed(self) -> tuple[Any, Any] | None:
        """The recorded lead session, set up to continue (``orchestrail resume``): its
        recorded turns and completed ``Agent`` calls are served from the trail; an
        ``Agent`` call in flight is continued (``continues_delegations``: the delegate
        gets ``resumed=True`` and finishes the task it had started). None when the
        session had already ended (the run ends with it)."""
        from agents.resume import SessionFinished, load_session
        from orchestrator.resume import resumed_session
        from orchestrator.roles import read_only
        from orchestrator.rolescripts import LEAD_KEY

        r, d = self.runner, self.definition
        cfg = r.exec
        assert cfg is not None and self.resume_session is not None
        self.session_id = self.resume_session
        try:
            log = await load_session(cfg.store, self.resume_session)
        except SessionFinished as done:
            self._ended(done.status, str(done.data.get("error") or done.status))
            return None
        provider = self.providers.provider([LEAD_KEY], d.name, "lead", cache_as=LEAD_KEY)
        progress = cfg.on_progress
        session = resumed_session(
            cfg.store, log, read_only(d), provider, provider_name=cfg.provider_name,
            workspace=cfg.project, model=cfg.model, approver=cfg.approver,
            cost_fn=cfg.catalog.cost, record_prompts=cfg.record_prompts,
            pass_env=tuple(cfg.pass_env), retry=cfg.retry,
            on_progress=None if progress is None else
            lambda kind, data: progress("lead", kind, data),
            delegate=self.delegate, max_depth=MAX_DEPTH)
        self._counted = (dict(log.usage), log.cost)  # resume counted what it spent before
        self._unpriced_noted = bool(log.unpriced)
        return session, log

    def _count(self) -> None:
        """Add what the lead spent since the last count to the run's totals: at each of
        its calls (so the run's budgets see it before the next dispatch) and at its end."""
        s = self._session
        if s is None:
            return
        usage, cost = self._counted
        delta = {k: int(v) - usage.get(k, 0) for k, v in s.usage.items()}
        unpriced = bool(s.unpriced) and not self._unpriced_noted  # one unpriced session
        self._unpriced_noted = self._unpriced_noted or bool(s.unpriced)
        self.runner.report.spend(delta, None if s.unpriced else s.cost - cost,
                                 1 if unpriced else 0)
        self._counted = (dict(s.usage), s.cost)

    # -- the Agent tool's delegate --------------------------------------------------------
    async def delegate(self, req: DelegateRequest) -> str:
        """One ``Agent`` call: map it onto a task, run it to its end, say how it went."""
        from agents.tools.base import ToolError
        from orchestrator.backlog import TaskValidationError

        r = self.runner
        assert r.backlog is not None and r.agents is not None
        if self._stopping or r._stop is not None:
            raise ToolError(f"the run is stopping ({self._stopping or r._stop}); nothing "
                            "more is dispatched")
        if req.subagent_type not in r.agents:
            raise ToolError(f"unknown subagent {req.subagent_type!r}; known: "
                            f"{', '.join(r.agents.names())}")
        self._count()
        await r.backlog.refresh()
        if req.resumed and self.resumer is not None:  # the call was running at the crash
            started = await self.resumer.call_task(req)
            if started is not None:
                return await self._continue(started, req)
        ids = [t.id for t in r.backlog.tasks()]
        tid = find_task_id(req.description, ids) or find_task_id(req.prompt, ids,
                                                                 after_word=True)
        if tid is None:
            try:
                tid = await self._adhoc(req)
            except TaskValidationError as exc:
                raise ToolError(f"could not create an ad-hoc task: {exc}") from None
        task = r.backlog.get(tid)
        if req.resumed and self.resumer is not None and task.status == "claimed" \
                and task.worker == r.run_id:
            return await self._continue(task, req)  # claimed, crash before its dispatch
        problem = self._not_dispatchable(task, req)
        if problem:
            raise ToolError(f"{problem}\n{backlog_status(r, self.adhoc)}")
        return await self._call(task, req)

    async def _continue(self, task: TaskState, req: DelegateRequest) -> str:
        """An ``Agent`` call that was running when the process died, continued by a
        resumed session: the task it started is finished exactly once. Settled already:
        its recorded result. Its session in flight: that session resumed (recorded turns
        and tool calls are not done again). Ended but not settled: settled from the
        trail. Claimed but never started: a first attempt now."""
        from agents.tools.base import ToolError

        r = self.runner
        assert r.backlog is not None
        if task.status in ("completed", "failed", "cancelled"):
            outcome = self.resumer.settled_outcome(task)
            text = self._report(task.id, req.subagent_type, outcome)
            if task.status != "completed":
                raise ToolError(text)
            return text
        if task.status == "claimed" and task.worker != r.run_id and \
                not task.lease_expired(_now()):
            raise ToolError(f"task {task.id} is being worked on (claimed by {task.worker})")
        return await self._call(task, req, first=self.resumer.continue_attempt)

    async def _call(self, task: TaskState, req: DelegateRequest, first: Any = None) -> str:
        """Work ``task`` for one ``Agent`` call and say how it went (a ToolError when it
        did not complete)."""
        from agents.tools.base import ToolError

        r = self.runner
        assert r.backlog is not None
        tid = task.id
        self._calls += 1
        try:
            outcome = await self._work(task, req, first)
        finally:
            self._calls -= 1
            if self._stopping is None and r._stop is not None:  # a run budget ran out
                self._stopping = r._stop[1]
            if self._stopping:  # this call is over: stop the next one out
                self._cancel_next()
        if outcome.released and r._stop is not None and r._stop[0] == "cancelled" \
                and r.backlog.get(tid).status == "open":
            # Ctrl-C gave the task back: the call did not end, it was stopped. No outcome
            # is recorded for it, so `orchestrail resume` continues it (the task's
            # cancelled session resumed) like a call a crash left running.
            if self._session is not None and req.parent_session == self.session_id:
                self._session.cancelled_as = ("cancelled", self._stopping or "cancelled")
            raise asyncio.CancelledError
        text = self._report(tid, req.subagent_type, outcome)
        if r.backlog.get(tid).status != "completed":
            raise ToolError(text)
        return text

    def _not_dispatchable(self, task: TaskState, req: DelegateRequest) -> str | None:
        r = self.runner
        assert r.backlog is not None
        if task.agent is not None and task.agent != req.subagent_type:
            return (f"task {task.id} is assigned to {task.agent!r}, not "
                    f"{req.subagent_type!r}: call Agent with subagent_type {task.agent!r}")
        if task.status == "completed":
            return f"task {task.id} is already completed"
        if task.status in ("failed", "cancelled"):
            return f"task {task.id} is {task.status}: {task.error or ''}".rstrip(": ")
        if task.status == "claimed":
            return f"task {task.id} is being worked on (claimed by {task.worker})"
        if not r.backlog.deps_done(task):
            waits = [d for d in task.depends_on if d not in r.backlog
                     or r.backlog.get(d).status != "completed"]
            return f"task {task.id} is not ready: it waits for {', '.join(waits)}"
        return None

    async def _adhoc(self, req: DelegateRequest) -> str:
        from orchestrator.backlog import TaskSpec

        r = self.runner
        assert r.backlog is not None and r.agents is not None
        n = len(self.adhoc) + 1
        while f"adhoc-{r.run_id}-{n}" in r.backlog:
            n += 1
        tid = f"adhoc-{r.run_id}-{n}"
        title = " ".join((req.description or req.prompt).split())[:120] or tid
        spec = TaskSpec(id=tid, title=title, prompt=req.prompt, agent=req.subagent_type,
                        labels=("ad-hoc",),
                        source={"kind": "lead", "session": req.parent_session,
                                "tool_use_id": req.tool_use_id})
        await r.backlog.add([spec], known_agents=r.agents.names())
        self.adhoc.add(tid)
        r.pending.add(tid)
        return tid

    async def _work(self, task: TaskState, req: DelegateRequest, first: Any = None
                    ) -> TaskOutcome:
        """Attempts until the task is settled for good (the runner's retry rules).
        ``first(task, cancel, lease, via)``: how the first attempt continues what a
        crashed process had started (``orchestrail resume``); None: a new attempt."""
        import time

        from agents.tools.base import ToolError
        from eventstore.errors import StoreError
        from orchestrator.execute import Cancel, Dispatch, execute_task

        r = self.runner
        assert r.backlog is not None and r.exec is not None
        backlog = r.backlog
        lease = timedelta(seconds=r.config.lease_seconds)
        via = Dispatch(agent=req.subagent_type, prompt=req.prompt,
                       causation_id=req.requested_event_id or None,
                       parent_session=req.parent_session, depth=req.depth,
                       max_depth=MAX_DEPTH, delegate=self.delegate,
                       tool_use_id=req.tool_use_id)
        r.pending.add(task.id)
        while True:
            current = backlog.get(task.id)
            if first is not None and current.status == "claimed" \
                    and current.worker == r.run_id:  # our own claim, from before the crash
                claimed: TaskState | None = await backlog.renew(task.id, r.run_id, lease=lease)
            else:
                claimed = await backlog.claim(task.id, r.run_id, lease=lease)
            if claimed is None:
                raise ToolError(f"task {task.id} was claimed by another worker")
            handle = Cancel()
            self._attempts.append(handle)

            async def heartbeat(tid: str = task.id) -> None:
                await backlog.renew(tid, r.run_id, lease=lease)

            try:
                resumed = None if first is None else await first(claimed, handle, lease, via)
                first = None
                outcome = resumed or await execute_task(
                    claimed, claimed.attempts, r.exec, cancel=handle, heartbeat=heartbeat,
                    heartbeat_every=max(1.0, lease.total_seconds() / 3), via=via)
            except asyncio.CancelledError:
                await asyncio.shield(self._release(task.id))
                raise
            except (StoreError, OSError):
                raise
            except Exception as exc:  # e.g. no script for an ad-hoc task: tell the lead
                await self._release(task.id, f"could not start: {exc}")
                raise ToolError(f"task {task.id} could not be dispatched: {exc}") from None
            finally:
                self._attempts.remove(handle)
            not_before: dict[str, float] = {}
            await r._settle(backlog.get(task.id), outcome, not_before)
            if task.id not in not_before:
                return outcome
            with contextlib.suppress(TimeoutError):  # the backoff; Ctrl-C ends it
                await asyncio.wait_for(self._wake.wait(),
                                       max(0.0, not_before[task.id] - time.monotonic()))
            if self._stopping or r._stop is not None:
                return outcome

    async def _release(self, tid: str, reason: str = "the lead was cancelled") -> None:
        r = self.runner
        assert r.backlog is not None
        try:
            await r.backlog.release(tid, r.run_id, reason=reason)
            r.report.released[tid] = reason
            r.pending.discard(tid)
        except Exception:  # already settled, or the store is gone: resume sorts it out
            pass

    def _report(self, tid: str, agent: str, outcome: TaskOutcome) -> str:
        r = self.runner
        assert r.backlog is not None
        t = r.backlog.get(tid)
        head = (f"Task {tid} {t.status} (agent {agent}, "
                f"attempt {outcome.attempt}, session {outcome.session_id})")
        if t.status != "completed":
            head += f": {t.error or outcome.reason()}"
        lines = [head]
        review = outcome.review
        if review:
            lines.append(f"Review by {review.get('agent')}: {review.get('verdict')} - "
                         f"{review.get('reason')}")
        answer = outcome.final_text or "(no answer)"
        if len(answer) > ANSWER_CAP:
            answer = answer[:ANSWER_CAP] + f"\n[... {len(answer) - ANSWER_CAP} more characters]"
        lines += ["", "The subagent's final answer:", answer, "",
                  backlog_status(r, self.adhoc)]
        return "\n".join(lines)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
