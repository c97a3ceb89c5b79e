"""The agent loop: one subagent, one task, one workspace, every action in the trail.

``AgentSession(...).run()`` drives a ``Provider`` turn by turn: call the model, run the
tools it asks for (each checked by the permission engine first), feed the results back,
until the model stops asking for tools, a budget runs out, or something fails for good.

Events go to stream ``session-<session_id>`` with ``correlation_id = run_id`` and
``causation_id`` = the ``task.dispatched`` event that started the session (or, standalone,
the session's own ``agent.started``). Each event is appended the moment its action
happens, one ``append`` per event: a killed process loses at most the action in flight,
never a batch. The order for one tool call is::

    tool.requested -> [tool.denied | approval.requested -> approval.resolved
                       (-> tool.denied) | tool.completed]

A call that cannot run (unknown tool, input that fails the tool's schema, input that is
not a JSON object) gets ``tool.completed`` with ``is_error`` and an ``error_kind``; the
model receives the same message as a ``tool_result`` error and may try again.

Why the loop owns retries (not the providers): each attempt is an event (``model.called``
then ``model.failed``), so an audit sees every 429 and how long we waited.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.fingerprint import Chain
from agents.providers.base import (
    Message,
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderError,
    ToolSpec,
    TransientProviderError,
    Usage,
)
from agents.rules import canonical_tool, parse_rule
from agents.tools import TOOLS, Tool, ToolContext, ToolError, ToolResult
from agents.tools.base import OUTPUT_CAP, Delegate, cap_output

if TYPE_CHECKING:
    from agents.approval import Approver
    from agents.definition import AgentDefinition
    from agents.permissions import Decision, PermissionEngine
    from agents.resume import PendingCall, SessionLog
    from eventstore.base import EventStore

CostFn = Callable[[str, Usage], float | None]

#: Characters of a tool's output kept in its ``tool.completed`` event (the sha256 and
#: length of the full output are always recorded).
EVENT_OUTPUT_CAP = 10_000


@dataclass(frozen=True)
class Budgets:
    """Limits that end a session with ``budget_exceeded:<kind>``. None = unlimited."""

    max_turns: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_wall_seconds: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for ``TransientProviderError``.

    ``delay(n) = min(max_delay, base_delay * 2**(n-1)) * (1 + jitter * U(-1, 1))``, or the
    provider's ``retry_after`` when it gave one (never less).
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(self.max_delay, self.base_delay * float(2.0 ** (attempt - 1)))
        wait = base * (1 + self.jitter * random.uniform(-1.0, 1.0))
        if retry_after is not None:
            wait = max(wait, retry_after)
        return max(0.0, wait)


@dataclass
class SessionResult:
    session_id: str
    run_id: str
    status: str  # completed | refused | budget_exceeded:<kind> | failed | cancelled
    final_text: str = ""
    turns: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = 0.0
    error: str | None = None
    started_event_id: str = ""
    tool_calls: int = 0
    denials: int = 0
    error_kind: str | None = None  # provider_transient | provider | internal | cancelled ...

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "run_id": self.run_id, "status": self.status,
                "final_text": self.final_text, "turns": self.turns, "usage": self.usage,
                "cost_usd": self.cost_usd, "error": self.error,
                "error_kind": self.error_kind, "tool_calls": self.tool_calls,
                "denials": self.denials, "stream": f"session-{self.session_id}"}


_SESSION = object()  # "use the session's causation id"


class _Stop(Exception):
    """Ends the loop with a status (budget) - not an error."""

    def __init__(self, status: str, detail: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.detail = detail


class _Failed(Exception):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _new_id() -> str:
    from eventstore.canonical import uuid7

    return str(uuid7())


def _process() -> dict[str, Any]:
    """Where the session runs (``resume`` refuses to continue a session whose process is
    still alive)."""
    import os
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid()}


def normalise_content(content: list[Any], turn: int) -> list[dict[str, Any]]:
    """Give every tool_use block an id (tool_results must reference one); anything that is
    not a block becomes a text note. Shared with ``agents.resume``, which rebuilds the
    conversation from the recorded (raw) ``model.responded`` content the same way."""
    out: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        if not isinstance(block, dict):
            out.append({"type": "text", "text": f"[malformed block: {block!r}]"[:500]})
            continue
        if block.get("type") == "tool_use" and not (
                isinstance(block.get("id"), str) and block["id"]):
            block = {**block, "id": f"toolu_missing_{turn}_{i}"}
        out.append(block)
    return out


def offered_tools(definition: AgentDefinition, extra: Mapping[str, Tool] | None = None,
                  *, delegation: bool = True) -> dict[str, Tool]:
    """The native tools the model is shown: the definition's ``tools`` (all when omitted)
    minus bare ``disallowedTools`` entries; ``Agent`` only when delegation is wired."""
    available: dict[str, Tool] = {name: cls() for name, cls in TOOLS.items()}
    if extra:
        available.update(extra)
    names = definition.tool_names
    chosen = list(available) if names is None else [n for n in names if n in available]
    removed: set[str] = set()
    for entry in definition.disallowed_tools:
        try:
            rule = parse_rule(entry)
        except ValueError:
            continue
        if rule.specifier is None:
            removed.add(canonical_tool(rule.tool))
    if not delegation:
        removed.add("Agent")
    return {n: available[n] for n in chosen if n not in removed}


class AgentSession:
    """One subagent working one task. Build it, then ``await session.run()``."""

    def __init__(
        self,
        definition: AgentDefinition,
        prompt: str,
        *,
        provider: Provider,
        store: EventStore,
        workspace: Path | str,
        model: str | None = None,
        provider_name: str | None = None,
        session_id: str | None = None,
        run_id: str | None = None,
        causation_id: str | None = None,
        parent_session: str | None = None,
        budgets: Budgets | None = None,
        retry: RetryPolicy | None = None,
        engine: PermissionEngine | None = None,
        approver: Approver | None = None,
        cost_fn: CostFn | None = None,
        record_prompts: bool = False,
        max_tokens: int = 8192,
        temperature: float | None = None,
        params: Mapping[str, Any] | None = None,
        extra_tools: Mapping[str, Tool] | None = None,
        delegate: Delegate | None = None,
        depth: int = 0,
        max_depth: int = 2,
        env: dict[str, str] | None = None,
        output_cap: int = OUTPUT_CAP,
        event_output_cap: int = EVENT_OUTPUT_CAP,
        bash_default_timeout: float = 120.0,
        on_progress: Callable[[str, dict[str, Any]], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        started_extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.definition = definition
        self.prompt = prompt
        self.provider = provider
        self.store = store
        self.session_id = session_id or _new_id()
        self.run_id = run_id or self.session_id
        self.stream = f"session-{self.session_id}"
        self.caller_causation = causation_id
        self.causation_id = causation_id
        self.parent_session = parent_session
        self.model = model or definition.model
        self.provider_name = provider_name or getattr(provider, "name", type(provider).__name__)
        self.budgets = budgets or Budgets(max_turns=definition.max_turns)
        self.retry = retry or RetryPolicy()
        self.approver = approver
        self.cost_fn = cost_fn
        self.record_prompts = record_prompts
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.params = dict(params or {})
        self.event_output_cap = event_output_cap
        self.on_progress = on_progress
        self.sleep = sleep
        #: more fields for ``agent.started`` from the caller: the git state the session
        #: starts from (``git``), and links such as ``rerun_of`` / ``forked_from``
        self.started_extra = dict(started_extra or {})
        self.actor = f"agent:{definition.name}"
        self.ctx = ToolContext(
            workspace=Path(workspace), session_id=self.session_id, env=env,
            output_cap=output_cap, depth=depth, max_depth=max_depth, delegate=delegate,
            bash_default_timeout=bash_default_timeout, deadline_left=self._time_left)
        self.workspace = self.ctx.workspace
        if engine is None:
            from agents.permissions import PermissionEngine

            engine = PermissionEngine.for_agent(definition, self.workspace)
        self.engine = engine
        self.tools = offered_tools(definition, extra_tools, delegation=delegate is not None)
        self.specs = [ToolSpec(name=t.name, description=t.description,
                               input_schema=t.input_schema) for t in self.tools.values()]
        self.system = (f"{definition.prompt}\n\nEnvironment:\n- Working directory: "
                       f"{self.workspace}\n- Platform: linux").strip()
        self.messages: list[Message] = []
        self.chain = Chain(str(self.workspace))
        self.usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                      "cache_creation_input_tokens": 0}
        self.cost = 0.0
        self.unpriced = 0
        self.turns = 0
        self.tool_calls = 0
        self.denials = 0
        self._expected: int | None = None  # set when resuming (agents.resume)
        self._next_attempt = 1
        self._resumed_call: dict[str, Any] = {}
        self.final_text = ""
        self._t0 = 0.0
        self._pending: list[Any] = []
        #: What ``agent.failed`` records when the session's task is cancelled: a caller that
        #: cancels for a reason (a task timeout, a lost lease, Ctrl-C) sets it first.
        self.cancelled_as: tuple[str, str] = ("cancelled", "session cancelled")
        #: On resume, an ``Agent`` call the crash left running is *continued* through the
        #: delegate (``DelegateRequest.resumed``) instead of recorded as interrupted. Only
        #: for a delegate that can find what the call started and carry it on without
        #: doing it twice (``orchestrator.lead``); others would dispatch it anew.
        self.continues_delegations = False

    # -- plumbing ------------------------------------------------------------------------
    async def _emit(self, type_: str, data: dict[str, Any], *, event_id: str | None = None,
                    causation_id: str | object | None = _SESSION, flush: bool = True) -> str:
        """Record one event. ``flush=False`` queues it to go out with the next append, which
        always happens before the next action starts (model call, tool run, approval,
        backoff sleep, the end of the session): what is durable is never behind what has
        begun. Grouping saves store round trips without batching anything to the end."""
        from eventstore.model import NewEvent

        cause = self.causation_id if causation_id is _SESSION else causation_id
        ev = NewEvent(type=type_, data=data, actor=self.actor, correlation_id=self.run_id,
                      causation_id=cause if isinstance(cause, str) else None,
                      id=event_id or _new_id())
        self._pending.append(ev)
        if flush:
            await self._flush()
        if self.on_progress is not None:
            self.on_progress(type_, data)
        return ev.id

    async def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            if self._expected is None:
                await self.store.append(self.stream, batch)
                return
            from eventstore.errors import WrongExpectedVersion

            try:  # a resumed session owns its stream: a second writer is refused
                res = await self.store.append(self.stream, batch, self._expected)
            except WrongExpectedVersion as exc:
                from agents.resume import SessionTaken

                raise SessionTaken(f"{self.stream} was appended to by someone else since "
                                   f"version {self._expected}: {exc}") from None
            self._expected = res.last_version

    def _time_left(self) -> float | None:
        if self.budgets.max_wall_seconds is None:
            return None
        return self.budgets.max_wall_seconds - (time.monotonic() - self._t0)

    def _usage_total(self) -> int:
        return sum(self.usage.values())

    def _check_budgets(self, before_call: bool) -> None:
        b = self.budgets
        if before_call and b.max_turns is not None and self.turns >= b.max_turns:
            raise _Stop("budget_exceeded:turns", {"limit": b.max_turns, "used": self.turns})
        if b.max_tokens is not None and self._usage_total() >= b.max_tokens:
            raise _Stop("budget_exceeded:tokens",
                        {"limit": b.max_tokens, "used": self._usage_total()})
        if b.max_cost_usd is not None and self.cost >= b.max_cost_usd:
            raise _Stop("budget_exceeded:cost", {"limit": b.max_cost_usd, "used": self.cost})
        left = self._time_left()
        if left is not None and left <= 0:
            raise _Stop("budget_exceeded:wall_time",
                        {"limit": b.max_wall_seconds, "used": round(time.monotonic() - self._t0,
                                                                    3)})

    def _wall_stop(self) -> _Stop:
        return _Stop("budget_exceeded:wall_time",
                     {"limit": self.budgets.max_wall_seconds,
                      "used": round(time.monotonic() - self._t0, 3)})

    def _add_message(self, message: Message) -> None:
        self.messages.append(message)
        self.chain.add(message)

    # -- the loop ------------------------------------------------------------------------
    async def run(self, *, resume: SessionLog | None = None) -> SessionResult:
        """Run the session; with ``resume`` (``agents.resume.load_session``), continue a
        recorded one from where its stream stops instead of starting it."""
        self._t0 = time.monotonic()
        if resume is not None:
            await self._restore(resume)
            return await self._drive(SessionResult(
                self.session_id, self.run_id, "failed",
                started_event_id=resume.started_event_id), resume)
        started_id = _new_id()
        if self.caller_causation is None:
            self.causation_id = started_id
        d = self.definition
        await self._emit("agent.started", {
            "agent": d.name, "definition_hash": d.definition_hash,
            "definition_source": str(d.source) if d.source else None,
            "model": self.model, "provider": self.provider_name,
            "allowed_tools": list(self.tools), "tools": list(d.tools) if d.tools is not None
            else None, "disallowed_tools": list(d.disallowed_tools),
            "permission_mode": self.engine.requested_mode,
            "parent_session": self.parent_session, "session_id": self.session_id,
            "depth": self.ctx.depth, "workspace": str(self.workspace), "prompt": self.prompt,
            "budgets": {k: v for k, v in vars(self.budgets).items() if v is not None},
            **_process(), **self.started_extra,
        }, event_id=started_id, causation_id=self.caller_causation)
        result = SessionResult(self.session_id, self.run_id, "failed",
                               started_event_id=started_id)
        self._add_message(Message(role="user", content=[{"type": "text", "text": self.prompt}]))
        return await self._drive(result, None)

    async def _drive(self, result: SessionResult, resume: SessionLog | None) -> SessionResult:
        try:
            status, detail = await self._turns(resume)
        except _Failed as exc:
            result.status, result.error, result.error_kind = "failed", str(exc), exc.kind
            await self._emit("agent.failed", {**self._totals(), "status": "failed",
                                              "error": str(exc), "error_kind": exc.kind})
            return self._fill(result)
        except asyncio.CancelledError:
            status, error = self.cancelled_as
            await asyncio.shield(self._emit("agent.failed", {
                **self._totals(), "status": status, "error": error,
                "error_kind": "cancelled"}))
            raise
        except Exception as exc:  # a bug or a store failure: record it if we still can
            result.status, result.error_kind = "failed", "internal"
            result.error = f"{type(exc).__name__}: {exc}"
            try:
                await self._emit("agent.failed", {**self._totals(), "status": "failed",
                                                  "error": result.error,
                                                  "error_kind": "internal"})
            except Exception:
                pass
            raise
        result.status = status
        await self._emit("agent.finished", {**self._totals(), "status": status,
                                            "final_text": self.final_text,
                                            **({"budget": detail} if detail else {})})
        return self._fill(result)

    def _totals(self) -> dict[str, Any]:
        return {"turns": self.turns, "usage": dict(self.usage),
                "cost_usd": round(self.cost, 8) if not self.unpriced else None,
                "cost_usd_priced": round(self.cost, 8), "unpriced_responses": self.unpriced,
                "tool_calls": self.tool_calls, "denials": self.denials,
                "duration_ms": round((time.monotonic() - self._t0) * 1000, 3)}

    def _fill(self, result: SessionResult) -> SessionResult:
        result.final_text = self.final_text
        result.turns = self.turns
        result.usage = dict(self.usage)
        result.cost_usd = None if self.unpriced else self.cost
        result.tool_calls = self.tool_calls
        result.denials = self.denials
        return result

    async def _turns(self, resume: SessionLog | None = None) -> tuple[str, dict[str, Any] | None]:
        try:
            if resume is not None:
                if resume.answered is not None:  # the final answer is recorded: done
                    return ("refused" if resume.answered == "refusal" else "completed", None)
                if resume.last_calls:  # finish the last recorded turn's tool calls
                    results = [c if isinstance(c, dict) else await self._resume_call(c)
                               for c in resume.last_calls]
                    self._add_message(Message(role="user", content=results))
            while True:
                self._check_budgets(before_call=True)
                self.turns += 1
                response = await self._call_model()
                content = self._normalise(response.content)
                self._add_message(Message(role="assistant", content=content))
                texts = [b.get("text", "") for b in content if b.get("type") == "text"]
                if texts:
                    self.final_text = "\n".join(t for t in texts if isinstance(t, str))
                uses = [b for b in content if b.get("type") == "tool_use"]
                self._check_budgets(before_call=False)
                if not uses:
                    return ("refused" if response.stop_reason == "refusal" else "completed",
                            None)
                results = [await self._tool_call(b) for b in uses]
                self._add_message(Message(role="user", content=results))
        except _Stop as stop:
            return stop.status, stop.detail

    def _normalise(self, content: list[Any]) -> list[dict[str, Any]]:
        return normalise_content(content, self.turns)

    # -- model calls with retries ------------------------------------------------------
    async def _call_model(self) -> ModelResponse:
        # model_construct: every part is already validated; re-validating the growing
        # history each turn would make the loop quadratic in the number of turns.
        request = ModelRequest.model_construct(
            model=self.model, system=self.system, messages=list(self.messages),
            tools=self.specs, max_tokens=self.max_tokens, temperature=self.temperature,
            params=self.params)
        params: dict[str, Any] = {"max_tokens": self.max_tokens, **self.params}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        attempt, self._next_attempt = self._next_attempt - 1, 1
        while True:
            attempt += 1
            called: dict[str, Any] = {
                "turn": self.turns, "attempt": attempt, "model": self.model,
                "provider": self.provider_name, "params": params,
                "messages": len(self.messages), "message_digest": self.chain.digest,
                "fingerprint": self.chain.fingerprint,
                "system_sha256": hashlib.sha256(self.system.encode()).hexdigest(),
                "tools": [s.name for s in self.specs]}
            if self.record_prompts:
                called["request"] = request.model_dump(mode="json")
            await self._emit("model.called", called)  # flushed: durable before the call
            t0 = time.monotonic()
            left = self._time_left()
            try:
                if left is not None:
                    if left <= 0:
                        raise self._wall_stop()
                    response = await asyncio.wait_for(self.provider.complete(request), left)
                else:
                    response = await self.provider.complete(request)
                if not isinstance(response, ModelResponse):
                    raise ProviderError(f"provider returned {type(response).__name__}, "
                                        "not a ModelResponse")
            except TimeoutError:
                await self._model_failed(attempt, "wall-time budget ran out during the call",
                                         None, False, None)
                raise self._wall_stop() from None
            except TransientProviderError as exc:
                will_retry = attempt < self.retry.max_attempts
                delay = self.retry.delay(attempt, exc.retry_after) if will_retry else None
                if delay is not None and left is not None and delay >= left - (
                        time.monotonic() - t0):
                    will_retry, delay = False, None
                await self._model_failed(attempt, str(exc), exc.status, True, delay,
                                         exc.retry_after)
                if not will_retry:
                    raise _Failed(f"model call failed after {attempt} attempt(s): {exc}",
                                  "provider_transient") from None
                assert delay is not None
                await self.sleep(delay)
                continue
            except ProviderError as exc:
                await self._model_failed(attempt, str(exc), exc.status, False, None)
                raise _Failed(f"model call failed: {exc}", "provider") from None
            except (_Stop, _Failed, asyncio.CancelledError):
                raise
            except Exception as exc:  # garbage from a provider is its failure, not ours
                msg = f"provider raised {type(exc).__name__}: {exc}"
                await self._model_failed(attempt, msg, None, False, None)
                raise _Failed(f"model call failed: {msg}", "provider") from None
            latency = (time.monotonic() - t0) * 1000
            return await self._responded(response, attempt, latency)

    async def _model_failed(self, attempt: int, error: str, status: int | None,
                            transient: bool, delay: float | None,
                            retry_after: float | None = None) -> None:
        await self._emit("model.failed", {
            "turn": self.turns, "attempt": attempt, "error": error, "status": status,
            "transient": transient, "retry_after": retry_after,
            "will_retry": delay is not None,
            "delay_s": round(delay, 3) if delay is not None else None})

    async def _responded(self, response: ModelResponse, attempt: int,
                         latency_ms: float) -> ModelResponse:
        u = response.usage
        for key in self.usage:
            self.usage[key] += int(getattr(u, key, 0) or 0)
        cost: float | None = None
        if self.cost_fn is not None:
            cost = self.cost_fn(response.model or self.model, u)
        if cost is None:
            self.unpriced += 1
        else:
            self.cost += cost
        await self._emit("model.responded", {
            "turn": self.turns, "attempt": attempt, "model": response.model or self.model,
            "response_id": response.response_id, "content": response.content,
            "stop_reason": response.stop_reason, "usage": u.model_dump(),
            "latency_ms": round(latency_ms, 3), "cost_usd": cost,
            "request_fingerprint": self.chain.fingerprint}, flush=False)
        return response

    # -- tool calls ----------------------------------------------------------------------
    async def _tool_call(self, block: dict[str, Any], *, requested: bool = False
                         ) -> dict[str, Any]:
        """Check and run one call. ``requested``: its ``tool.requested`` is already in the
        trail (a resumed session re-asking an approval that never got an answer)."""
        use_id = str(block["id"])
        name = block.get("name")
        raw_input = block.get("input")
        self.ctx.tool_use_id, self.ctx.requested_event_id = use_id, ""
        if not requested:
            self.tool_calls += 1
            self.ctx.requested_event_id = await self._emit(
                "tool.requested", {"turn": self.turns, "tool_use_id": use_id, "tool": name,
                                   "input": raw_input}, flush=False)
        if not isinstance(name, str) or not name:
            return await self._tool_error(use_id, str(name), "malformed_call",
                                          "the tool call has no tool name")
        data: Any = raw_input
        if isinstance(data, str):  # some providers pass the raw JSON text through
            try:
                data = json.loads(data)
            except ValueError as exc:
                return await self._tool_error(use_id, name, "invalid_json",
                                              f"the input of {name} is not valid JSON: {exc}")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return await self._tool_error(use_id, name, "invalid_input",
                                          f"the input of {name} must be a JSON object, got "
                                          f"{type(data).__name__}")
        canonical = canonical_tool(name)
        tool = self.tools.get(canonical)
        if tool is None and canonical not in TOOLS:
            known = ", ".join(self.tools) or "none"
            return await self._tool_error(use_id, name, "unknown_tool",
                                          f"unknown tool {name!r}; available tools: {known}")
        if tool is not None:
            problems = tool.validate(data)
            if problems:
                return await self._tool_error(
                    use_id, name, "invalid_input",
                    f"invalid input for {name}: " + "; ".join(problems[:10]))
        decision = self.engine.check(canonical, data)
        if decision.behavior == "ask":
            decision = await self._ask(use_id, canonical, data, decision)
        if decision.behavior != "allow" or tool is None:
            if tool is None and decision.behavior == "allow":  # native, but not offered
                return await self._tool_error(use_id, name, "unavailable",
                                              f"{name} is not available in this session")
            return await self._denied(use_id, canonical, decision)
        return await self._execute(use_id, tool, data)

    async def _ask(self, use_id: str, tool: str, data: dict[str, Any],
                   decision: Decision) -> Decision:
        from agents.approval import ApprovalRequest, DenyApprover

        approver = self.approver or DenyApprover("no approver is configured")
        await self._emit("approval.requested", {"tool_use_id": use_id, "tool": tool,
                                                "input": data, **decision.to_dict(),
                                                "behavior": "ask"})
        final = await approver.resolve(ApprovalRequest(tool, data, decision,
                                                       self.definition.name))
        if final.behavior not in ("allow", "deny"):  # an approver must decide
            from agents.permissions import Decision as D

            final = D("deny", f"approver returned {final.behavior!r}; denied", tool,
                      decision.rule, "approver:invalid", decision.subject)
        await self._emit("approval.resolved", {"tool_use_id": use_id, "tool": tool,
                                               "approved": final.behavior == "allow",
                                               **final.to_dict()})
        return final

    async def _denied(self, use_id: str, tool: str, decision: Decision) -> dict[str, Any]:
        self.denials += 1
        await self._emit("tool.denied", {"turn": self.turns, "tool_use_id": use_id,
                                         "tool": tool, "rule": decision.rule,
                                         "reason": decision.reason,
                                         "decision": decision.to_dict()}, flush=False)
        return {"type": "tool_result", "tool_use_id": use_id, "is_error": True,
                "content": f"Permission denied: {decision.reason}"}

    async def _tool_error(self, use_id: str, tool: str, kind: str,
                          message: str) -> dict[str, Any]:
        await self._emit("tool.completed", {
            "turn": self.turns, "tool_use_id": use_id, "tool": tool, "is_error": True,
            "error_kind": kind, "output": message,
            "output_sha256": hashlib.sha256(message.encode()).hexdigest(),
            "output_chars": len(message), "exit_code": None, "duration_ms": 0.0, "files": []},
            flush=False)
        return {"type": "tool_result", "tool_use_id": use_id, "is_error": True,
                "content": message}

    async def _execute(self, use_id: str, tool: Tool, data: dict[str, Any]) -> dict[str, Any]:
        await self._flush()  # tool.requested is durable before the tool runs
        t0 = time.monotonic()
        kind: str | None = None
        left = self._time_left()
        try:
            if left is not None:
                result = await asyncio.wait_for(tool.run(data, self.ctx), max(left, 0.001))
            else:
                result = await tool.run(data, self.ctx)
        except ToolError as exc:
            result, kind = ToolResult(str(exc), is_error=True), "tool_error"
        except TimeoutError:
            result = ToolResult("cancelled: the session's wall-time budget ran out",
                                is_error=True)
            await self._completed(use_id, tool.name, result, t0, "budget")
            raise self._wall_stop() from None
        except (asyncio.CancelledError, _Stop):
            raise
        except Exception as exc:  # OSError and friends: report, keep the session alive
            result = ToolResult(f"{tool.name} failed: {type(exc).__name__}: {exc}",
                                is_error=True)
            kind = "exception"
        output, truncated = cap_output(result.output, self.ctx.output_cap)
        result.truncated = result.truncated or truncated
        result.output = output
        await self._completed(use_id, tool.name, result, t0, kind)
        return {"type": "tool_result", "tool_use_id": use_id, "is_error": result.is_error,
                "content": result.output}

    async def _completed(self, use_id: str, name: str, result: ToolResult, t0: float,
                         kind: str | None) -> None:
        shown, _ = cap_output(result.output, self.event_output_cap)
        data: dict[str, Any] = {
            "turn": self.turns, "tool_use_id": use_id, "tool": name,
            "is_error": result.is_error, "output": shown,
            "output_sha256": hashlib.sha256(result.output.encode()).hexdigest(),
            "output_chars": len(result.output), "truncated": result.truncated,
            "exit_code": result.exit_code, "timed_out": result.timed_out,
            "duration_ms": round((time.monotonic() - t0) * 1000, 3),
            "files": [f.to_dict() for f in result.files]}
        if kind:
            data["error_kind"] = kind
        data.update(self._resumed_call)
        await self._emit("tool.completed", data, flush=False)

    # -- resuming (agents.resume) ----------------------------------------------------------
    async def _restore(self, log: SessionLog) -> None:
        """Take over a recorded session: its conversation, counters and stream head, then
        record ``agent.resumed`` (the first append, at the head we read: one winner)."""
        self.causation_id = log.causation_id or log.started_event_id
        self._t0 = time.monotonic() - log.elapsed_seconds()  # wall budget spans the crash
        for message in log.messages:
            self._add_message(message)
        self.turns, self.final_text = log.turns, log.final_text
        for key, value in log.usage.items():
            self.usage[key] = self.usage.get(key, 0) + value
        self.cost, self.unpriced = log.cost, log.unpriced
        self.tool_calls, self.denials = log.tool_calls, log.denials
        if log.model_in_flight is not None:
            self._next_attempt = log.model_in_flight[1] + 1
        forward = getattr(self.provider, "resume_after", None)
        if callable(forward):  # a stateful provider (script) skips what was served
            forward(log.responses)
        self._expected = log.head
        d = self.definition
        recorded_hash = log.started.get("definition_hash")
        await self._emit("agent.resumed", {
            "session_id": self.session_id, "from_version": log.head,
            "previous_status": log.previous_status, "resumes": log.resumes + 1,
            "turns_recorded": log.turns, "tool_calls_recorded": log.tool_calls,
            "model_call_in_flight": None if log.model_in_flight is None else {
                "turn": log.model_in_flight[0], "attempts": log.model_in_flight[1]},
            "tool_calls_pending": [{"tool_use_id": c.block["id"], "tool": c.block.get("name"),
                                    "state": c.state} for c in log.pending],
            "capped_outputs": log.capped, "final_answer_recorded": log.answered is not None,
            "provider": self.provider_name, "model": self.model,
            "definition_hash": d.definition_hash,
            "definition_changed": bool(recorded_hash) and recorded_hash != d.definition_hash,
            "workspace": str(self.workspace), **_process()})

    async def _resume_call(self, call: PendingCall) -> dict[str, Any]:
        """The outcome of a call the crash left open (policy: agents.resume docstring)."""
        from agents.resume import REEXECUTE_SAFE, interrupted_outcome

        block, use_id = call.block, str(call.block["id"])
        if call.state == "new":
            return await self._tool_call(block)
        if call.state == "asking":
            return await self._tool_call(block, requested=True)
        name = str(block.get("name") or "?")
        if call.state == "refused":
            from agents.permissions import Decision

            a = call.approval or {}
            return await self._denied(use_id, canonical_tool(name), Decision(
                "deny", str(a.get("reason") or "refused by the approver"), canonical_tool(name),
                a.get("rule"), str(a.get("source") or "approver"), a.get("subject")))
        canonical = canonical_tool(name)
        tool = self.tools.get(canonical)
        data = block.get("input")
        if canonical == "Agent" and self.continues_delegations and tool is not None \
                and self.ctx.delegate is not None and isinstance(data, dict):
            self._resumed_call = {"resumed": True, "continued": True}
            self.ctx.tool_use_id, self.ctx.requested_event_id = use_id, ""
            self.ctx.resuming = True
            try:
                return await self._execute(use_id, tool, data)
            finally:
                self._resumed_call = {}
                self.ctx.resuming = False
        if canonical in REEXECUTE_SAFE and tool is not None and isinstance(data, dict):
            self._resumed_call = {"resumed": True, "reexecuted": True}
            try:
                return await self._execute(use_id, tool, data)
            finally:
                self._resumed_call = {}
        data = interrupted_outcome(self.turns, use_id, name)
        await self._emit("tool.completed", data, flush=False)
        return {"type": "tool_result", "tool_use_id": use_id, "is_error": True,
                "content": data["output"]}


async def run_agent(definition: AgentDefinition, prompt: str, **kwargs: Any) -> SessionResult:
    """Shorthand for ``await AgentSession(definition, prompt, **kwargs).run()``."""
    return await AgentSession(definition, prompt, **kwargs).run()
