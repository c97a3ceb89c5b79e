"""The ``claude-code`` runner: the real ``claude`` binary runs the session, we record it.

``claude`` runs its own agent loop and tools, so this is a *session runner*, not a
``Provider``: it starts ``claude -p --output-format stream-json --verbose
--include-partial-messages`` in the workspace with the subagent definition turned into
flags, reads stdout line by line and appends OUR events to ``session-<id>`` as each line
arrives (a killed run loses at most the line in flight):

=====================================  ===============================================
stream-json line                       event(s)
=====================================  ===============================================
``system/init``                        ``agent.started`` (+ claude's session id,
                                       version, resolved model, tool list)
``system/api_retry``                   ``model.failed`` (``transient``, claude retries)
``assistant`` lines of one message id  one ``model.responded`` (blocks merged, usage
                                       counted once per message id, exact output
                                       tokens from the partial-message deltas), then
                                       ``tool.requested`` per ``tool_use``
``user`` ``tool_result``               ``tool.completed`` (``is_error``), or
                                       ``tool.denied`` when claude refused the call
``result``                             ``tool.denied`` for ``permission_denials`` not
                                       seen yet (reconciled), then ``agent.finished``
                                       (or ``agent.failed``) with usage, cost, turns
lines with ``parent_tool_use_id``      the same events in the subagent's own stream
                                       ``session-<uuid>``: ``agent.started`` (caused by
                                       the Agent ``tool.requested``) ... and
                                       ``agent.finished`` when the Agent call returns
=====================================  ===============================================

Flags: the definition body is the system prompt (``--system-prompt``, as Claude Code does
for a subagent; ``system_prompt_mode="append"`` keeps claude's own prompt), ``tools``
become ``--tools`` (bare names: what the model sees) and ``--allowedTools`` (the rules:
what runs without asking), ``disallowedTools`` become ``--disallowedTools``, ``model``
(alias resolved for ``claude-code``) ``--model``, ``permissionMode`` ``--permission-mode``,
``maxTurns`` ``--max-turns``. Our session id is claude's (``--session-id``), so hooks and
transcripts of the same session correlate. ``--dangerously-skip-permissions`` is never
passed, and ``bypassPermissions`` is refused when running as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agents.providers.base import ProviderError, Usage

if TYPE_CHECKING:
    from agents.definition import AgentDefinition
    from agents.models import ModelCatalog
    from eventstore.base import EventStore

log = structlog.get_logger("agents.claude_code")

ENV_BIN = "ORCHESTRAIL_CLAUDE_BIN"
INSTALL_HINT = ("install it with `npm install -g @anthropic-ai/claude-code` (or "
                "`npm install @anthropic-ai/claude-code` in the project), or point "
                f"{ENV_BIN} at the binary")
#: How claude words a refused call in the tool_result (checked against permission_denials
#: again at the end, so a wording change only delays the ``tool.denied``, never loses it).
#: The transcript import (``orchestrator.importers.claude_records``) reads it too.
DENIAL_TEXT = re.compile(r"requested permissions? to use|haven't granted|has not been granted|"
                         r"\bapproval\b|was blocked|auto-allowed|permission to use .* denied|"
                         r"denied by|not allowed", re.IGNORECASE)
_AGENT_TOOLS = ("Agent", "Task")
_STATUS = {"success": "completed", "error_max_turns": "budget_exceeded:turns",
           "error_max_budget_usd": "budget_exceeded:cost"}


class ClaudeCodeError(ProviderError):
    """The ``claude`` binary is missing, refused to start, or was misconfigured."""


def find_claude_binary(explicit: str | None = None, *, project_root: Path | None = None,
                       config: Any | None = None) -> str:
    """``explicit``, then ``ORCHESTRAIL_CLAUDE_BIN``, ``providers.claude-code.binary``,
    ``claude`` on PATH, and a project-local ``node_modules/.bin/claude``."""
    candidates: list[tuple[str, str]] = []
    if explicit:
        candidates.append(("argument", explicit))
    if os.environ.get(ENV_BIN):
        candidates.append((ENV_BIN, os.environ[ENV_BIN]))
    section = _section(config)
    if section.get("binary"):
        candidates.append(("providers.claude-code.binary", str(section["binary"])))
    for source, value in candidates:
        path = shutil.which(value) or (value if os.access(value, os.X_OK) else None)
        if path is None:
            raise ClaudeCodeError(f"claude binary {value!r} (from {source}) is not an "
                                  f"executable file; {INSTALL_HINT}")
        return path
    on_path = shutil.which("claude")
    if on_path:
        return on_path
    root = project_root or (config.root if config is not None else Path.cwd())
    for local in (root / "node_modules/.bin/claude",
                  root / ".cache/claude-code/node_modules/.bin/claude"):
        if os.access(local, os.X_OK):
            return str(local)
    raise ClaudeCodeError(f"the claude binary was not found ({ENV_BIN}, PATH, "
                          f"{root}/node_modules/.bin); {INSTALL_HINT}")


def _section(config: Any | None) -> dict[str, Any]:
    if config is None:
        return {}
    providers = (getattr(config, "model_extra", None) or {}).get("providers") or {}
    section = providers.get("claude-code") if isinstance(providers, dict) else None
    return section if isinstance(section, dict) else {}


def _bare(rule: str) -> str:
    return rule.split("(", 1)[0].strip()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content
                         if isinstance(b, dict) and b.get("type") == "text")
    return "" if content is None else json.dumps(content)


def _usage(raw: Any) -> Usage:
    raw = raw if isinstance(raw, dict) else {}
    return Usage(input_tokens=int(raw.get("input_tokens") or 0),
                 output_tokens=int(raw.get("output_tokens") or 0),
                 cache_read_input_tokens=int(raw.get("cache_read_input_tokens") or 0),
                 cache_creation_input_tokens=int(raw.get("cache_creation_input_tokens") or 0))


@dataclass
class ClaudeCodeResult:
    """What the caller learns at the end; the full story is in the events."""

    session_id: str
    run_id: str
    status: str = "failed"
    final_text: str = ""
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    claude_cost_usd: float | None = None
    claude_session_id: str | None = None
    tool_calls: int = 0
    denials: int = 0
    exit_code: int | None = None
    error: str | None = None
    started_event_id: str | None = None
    subagent_sessions: dict[str, str] = field(default_factory=dict)  # tool_use_id -> session


@dataclass
class _Pending:
    """One assistant message being assembled from its stream-json lines."""

    id: str
    model: str
    usage: dict[str, Any] = field(default_factory=dict)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    streamed: bool = False  # seen through partial-message events: wait for message_stop
    deferred: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Session:
    """Our session stream for the main agent or one subagent."""

    session_id: str
    agent: str
    causation_id: str | None
    turns: int = 0
    tool_use_id: str | None = None  # the Agent call that started it (subagents)
    started: bool = False
    finished: bool = False

    @property
    def stream(self) -> str:
        return f"session-{self.session_id}"


class ClaudeCodeRunner:
    """Run one subagent definition with the real ``claude`` binary and record it."""

    name = "claude-code"

    def __init__(self, store: EventStore | None = None, *, binary: str | None = None,
                 base_url: str | None = None, api_key: str | None = None,
                 env: dict[str, str] | None = None, config: Any | None = None,
                 catalog: ModelCatalog | None = None, extra_args: tuple[str, ...] = (),
                 system_prompt_mode: str = "replace", partial_messages: bool = True,
                 timeout: float | None = None, output_cap: int = 16_000) -> None:
        section = _section(config)
        self.store = store
        self.binary = binary or section.get("binary")
        self.config = config
        self.base_url = base_url or section.get("base_url")
        self.api_key = api_key
        self.env = dict(env or {})
        self._catalog = catalog
        self.extra_args = tuple(extra_args) or tuple(section.get("extra_args") or ())
        if system_prompt_mode not in ("replace", "append"):
            raise ClaudeCodeError(f"system_prompt_mode must be replace or append, got "
                                  f"{system_prompt_mode!r}")
        self.system_prompt_mode = section.get("system_prompt_mode", system_prompt_mode)
        self.partial_messages = partial_messages
        self.timeout = timeout if timeout is not None else section.get("timeout")
        self.output_cap = output_cap

    @property
    def catalog(self) -> ModelCatalog:
        if self._catalog is None:
            from agents.models import ModelCatalog

            self._catalog = ModelCatalog.from_config(self.config) if self.config else \
                ModelCatalog()
        return self._catalog

    # -- the command ---------------------------------------------------------------------
    def command(self, definition: AgentDefinition, *, model: str, session_id: str,
                binary: str) -> list[str]:
        """argv for one session (the prompt goes to stdin, never through argv)."""
        argv = [binary, "-p", "--output-format", "stream-json", "--verbose",
                "--session-id", session_id, "--model", model]
        if self.partial_messages:
            argv.append("--include-partial-messages")
        if definition.prompt:
            flag = "--system-prompt" if self.system_prompt_mode == "replace" \
                else "--append-system-prompt"
            argv += [flag, definition.prompt]
        if definition.tools is not None:
            bare = list(dict.fromkeys(_bare(t) for t in definition.tools))
            argv += ["--tools", ",".join(bare) if bare else ""]
            if definition.tools:
                argv += ["--allowedTools", ",".join(definition.tools)]
        if definition.disallowed_tools:
            argv += ["--disallowedTools", ",".join(definition.disallowed_tools)]
        mode = definition.permission_mode
        if mode == "bypassPermissions" and hasattr(os, "geteuid") and os.geteuid() == 0:
            raise ClaudeCodeError(
                f"{definition.source or definition.name}: permissionMode bypassPermissions "
                "is refused when running as root; list the tools the agent may use in "
                "'tools' instead")
        if mode:
            argv += ["--permission-mode", str(mode)]
        if definition.max_turns:
            argv += ["--max-turns", str(definition.max_turns)]
        return [*argv, *self.extra_args]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.base_url:
            env["ANTHROPIC_BASE_URL"] = self.base_url
        if self.api_key:
            env["ANTHROPIC_API_KEY"] = self.api_key
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
        env.update(self.env)
        return env

    # -- a session -----------------------------------------------------------------------
    async def run(self, definition: AgentDefinition, prompt: str, *, workspace: Path | str,
                  run_id: str, store: EventStore | None = None, session_id: str | None = None,
                  causation_id: str | None = None, parent_session: str | None = None,
                  parent_model: str | None = None) -> ClaudeCodeResult:
        from eventstore.canonical import uuid7

        store = store or self.store
        if store is None:
            raise ClaudeCodeError("ClaudeCodeRunner.run needs an event store")
        binary = find_claude_binary(self.binary, config=self.config)
        model = self.catalog.resolve(definition.model, self.name, parent=parent_model)
        session_id = session_id or str(uuid7())
        argv = self.command(definition, model=model, session_id=session_id, binary=binary)
        workspace = Path(workspace)
        if not workspace.is_dir():
            raise ClaudeCodeError(f"workspace {workspace} is not a directory")
        rec = _Recorder(self, store, definition, prompt, run_id=run_id, model=model,
                        session=_Session(session_id, definition.name, causation_id),
                        parent_session=parent_session, workspace=workspace, argv=argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=str(workspace), env=self.environment(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True, limit=64 * 2**20)
        except OSError as exc:
            raise ClaudeCodeError(f"cannot start {binary}: {exc}; {INSTALL_HINT}") from None
        return await rec.drive(proc, prompt, self.timeout)


class _Recorder:
    """Maps one claude process's stream-json to events, line by line."""

    def __init__(self, runner: ClaudeCodeRunner, store: EventStore,
                 definition: AgentDefinition, prompt: str, *, run_id: str, model: str,
                 session: _Session, parent_session: str | None, workspace: Path,
                 argv: list[str]) -> None:
        self.runner = runner
        self.store = store
        self.definition = definition
        self.prompt = prompt
        self.run_id = run_id
        self.model = model
        self.main = session
        self.parent_session = parent_session
        self.workspace = workspace
        self.argv = argv
        self.result = ClaudeCodeResult(session.session_id, run_id)
        self.sessions: dict[str | None, _Session] = {None: session}
        self.pending: dict[str | None, _Pending] = {}
        self.counted: set[str] = set()
        self.requests: dict[str, dict[str, Any]] = {}
        self.denied: set[str] = set()
        self.unparsed = 0
        self.stderr_tail = b""
        self.finished = False

    # -- plumbing ------------------------------------------------------------------------
    async def emit(self, sess: _Session, type_: str, data: dict[str, Any],
                   causation_id: str | None = None) -> str:
        from eventstore.canonical import uuid7
        from eventstore.model import NewEvent

        ev = NewEvent(type=type_, data=data, actor=f"agent:{sess.agent}",
                      correlation_id=self.run_id, id=str(uuid7()),
                      causation_id=causation_id or sess.causation_id)
        await self.store.append(sess.stream, [ev])
        return ev.id

    async def drive(self, proc: asyncio.subprocess.Process, prompt: str,
                    wall_s: float | None) -> ClaudeCodeResult:
        assert proc.stdin and proc.stdout and proc.stderr
        stderr_task = asyncio.create_task(self._drain_stderr(proc.stderr))
        try:
            proc.stdin.write(prompt.encode())
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            async with asyncio.timeout(wall_s):
                while True:
                    raw = await proc.stdout.readline()
                    if not raw:
                        break
                    await self.line(raw)
                await proc.wait()
        except TimeoutError:
            _kill(proc)
            await proc.wait()
            await self.fail("timeout", f"claude did not finish within {wall_s} s",
                            proc.returncode)
            return self.result
        except asyncio.CancelledError:
            _kill(proc)
            with contextlib.suppress(Exception):
                await asyncio.shield(self.fail("cancelled", "session cancelled", None))
            raise
        except BaseException:
            _kill(proc)
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stderr_task, 5)
        self.result.exit_code = proc.returncode
        if not self.finished:
            tail = self.stderr_tail.decode(errors="replace").strip()[-2000:]
            await self.fail("failed", f"claude exited with code {proc.returncode} before its "
                            f"result line{': ' + tail if tail else ''}", proc.returncode)
        return self.result

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.stderr_tail = (self.stderr_tail + chunk)[-8192:]

    # -- lines ---------------------------------------------------------------------------
    async def line(self, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            self.unparsed += 1
            log.warning("claude stream: unparsable line", line=raw[:200].decode(errors="replace"))
            return
        if not isinstance(msg, dict):
            self.unparsed += 1
            return
        kind = msg.get("type")
        if kind == "system":
            await self._system(msg)
        elif kind == "stream_event":
            await self._stream_event(msg)
        elif kind == "assistant":
            await self._assistant(msg)
        elif kind == "user":
            key = msg.get("parent_tool_use_id")
            pend = self.pending.get(key)
            if pend is not None and pend.streamed:
                pend.deferred.append(msg)  # a tool result before its message_stop
                return
            await self._flush(key)
            await self._user(msg)
        elif kind == "result":
            await self._result(msg)

    async def _start_main(self, init: dict[str, Any] | None) -> None:
        if self.main.started:
            return
        self.main.started = True
        d = self.definition
        init = init or {}
        self.result.claude_session_id = init.get("session_id")
        data = {
            "agent": d.name, "definition_hash": d.definition_hash,
            "definition_source": str(d.source) if d.source else None,
            "model": self.model, "provider": "claude-code",
            "tools": list(d.tools) if d.tools is not None else None,
            "allowed_tools": list(d.tools or ()), "disallowed_tools": list(d.disallowed_tools),
            "permission_mode": init.get("permissionMode", d.permission_mode),
            "parent_session": self.parent_session, "session_id": self.main.session_id,
            "workspace": str(self.workspace), "prompt": self.prompt,
            "claude": {"session_id": init.get("session_id"),
                       "version": init.get("claude_code_version"),
                       "model": init.get("model"), "tools": init.get("tools"),
                       "agents": init.get("agents"), "argv": self.argv[1:]},
        }
        self.result.started_event_id = await self.emit(self.main, "agent.started", data)
        if self.main.causation_id is None:
            self.main.causation_id = self.result.started_event_id

    async def _system(self, msg: dict[str, Any]) -> None:
        sub = msg.get("subtype")
        if sub == "init":
            await self._start_main(msg)
        elif sub == "api_retry":
            await self._start_main(None)
            sess = await self._session(msg.get("parent_tool_use_id"))
            await self.emit(sess, "model.failed", {
                "turn": sess.turns + 1, "attempt": msg.get("attempt"), "transient": True,
                "error": msg.get("error") or msg.get("message"),
                "status": msg.get("error_status"), "retry_in_ms": msg.get("retry_delay_ms"),
                "retried_by": "claude"})

    async def _session(self, key: str | None) -> _Session:
        """The session a line belongs to; a subagent's starts at its first line."""
        sess = self.sessions.get(key)
        if sess is not None:
            return sess
        from eventstore.canonical import uuid7

        if key and key not in self.requests:  # claude started the Agent call mid-message
            for owner, pend in list(self.pending.items()):
                if owner != key and any(b.get("id") == key for b in pend.blocks):
                    await self._flush(owner)
            sess = self.sessions.get(key)
            if sess is not None:
                return sess

        req = self.requests.get(key or "", {})
        agent = str((req.get("input") or {}).get("subagent_type") or "subagent")
        sess = _Session(str(uuid7()), agent, req.get("event_id"), tool_use_id=key)
        self.sessions[key] = sess
        if key:
            self.result.subagent_sessions[key] = sess.session_id
        started = await self.emit(sess, "agent.started", {
            "agent": agent, "provider": "claude-code", "model": None,
            "parent_session": self.main.session_id, "session_id": sess.session_id,
            "parent_tool_use_id": key, "prompt": (req.get("input") or {}).get("prompt"),
            "description": (req.get("input") or {}).get("description"),
            "workspace": str(self.workspace)})
        sess.started = True
        sess.causation_id = sess.causation_id or started
        return sess

    async def _stream_event(self, msg: dict[str, Any]) -> None:
        ev = msg.get("event") or {}
        key = msg.get("parent_tool_use_id")
        kind = ev.get("type")
        if kind == "message_start":
            m = ev.get("message") or {}
            await self._flush(key)
            self.pending[key] = _Pending(str(m.get("id")), str(m.get("model") or ""),
                                         dict(m.get("usage") or {}), streamed=True)
        elif kind == "message_delta":
            pend = self.pending.get(key)
            if pend is not None:
                pend.usage.update({k: v for k, v in (ev.get("usage") or {}).items()
                                   if v is not None})
                pend.stop_reason = (ev.get("delta") or {}).get("stop_reason") or \
                    pend.stop_reason
        elif kind == "message_stop":
            await self._flush(key)

    async def _assistant(self, msg: dict[str, Any]) -> None:
        await self._start_main(None)
        m = msg.get("message") or {}
        key = msg.get("parent_tool_use_id")
        mid = str(m.get("id"))
        pend = self.pending.get(key)
        if pend is None or pend.id != mid:
            await self._flush(key)
            pend = self.pending[key] = _Pending(mid, str(m.get("model") or ""))
        if not pend.streamed:
            for k, v in (m.get("usage") or {}).items():
                if isinstance(v, int):
                    pend.usage[k] = max(v, pend.usage.get(k) or 0)
                elif v is not None:
                    pend.usage.setdefault(k, v)
        pend.stop_reason = m.get("stop_reason") or pend.stop_reason
        pend.blocks.extend(b for b in (m.get("content") or []) if isinstance(b, dict))

    async def _flush(self, key: str | None) -> None:
        pend = self.pending.pop(key, None)
        if pend is None:
            return
        sess = await self._session(key)
        sess.turns += 1
        if key is None:
            self.result.turns = max(self.result.turns, sess.turns)
        first = pend.id not in self.counted
        self.counted.add(pend.id)
        usage = _usage(pend.usage) if first else Usage()
        model = pend.model or self.model
        calls = [b for b in pend.blocks if b.get("type") == "tool_use"]
        responded = await self.emit(sess, "model.responded", {
            "turn": sess.turns, "model": model, "response_id": pend.id,
            "content": pend.blocks,
            "stop_reason": pend.stop_reason or ("tool_use" if calls else "end_turn"),
            "usage": usage.model_dump(), "usage_counted_earlier": not first,
            "cost_usd": self.runner.catalog.cost(model, usage), "source": "claude-code"})
        for block in calls:
            use_id = str(block.get("id"))
            self.result.tool_calls += 1
            event_id = await self.emit(sess, "tool.requested", {
                "turn": sess.turns, "tool_use_id": use_id, "tool": block.get("name"),
                "input": block.get("input")}, causation_id=responded)
            self.requests[use_id] = {"event_id": event_id, "tool": block.get("name"),
                                     "input": block.get("input"), "t0": time.monotonic(),
                                     "session": sess, "turn": sess.turns}
        for deferred in pend.deferred:
            await self._user(deferred)

    async def _user(self, msg: dict[str, Any]) -> None:
        key = msg.get("parent_tool_use_id")
        content = (msg.get("message") or {}).get("content")
        if key is not None and key not in self.sessions:
            await self._session(key)  # the subagent's prompt line: it has started
        if not isinstance(content, list):
            return
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                await self._tool_result(block, msg.get("tool_use_result"))

    async def _tool_result(self, block: dict[str, Any], extra: Any) -> None:
        use_id = str(block.get("tool_use_id"))
        req = self.requests.get(use_id)
        if req is None:
            return
        sess: _Session = req["session"]
        text = _text(block.get("content"))
        is_error = bool(block.get("is_error"))
        if is_error and DENIAL_TEXT.search(text):
            await self._denied(use_id, text, reconciled=False)
            return
        child = self.sessions.get(use_id)
        if req["tool"] in _AGENT_TOOLS and child is not None and not child.finished:
            await self._finish_child(child, text, extra, is_error)
        shown = text[: self.runner.output_cap]
        data: dict[str, Any] = {
            "turn": req["turn"], "tool_use_id": use_id, "tool": req["tool"],
            "is_error": is_error, "output": shown,
            "output_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "output_chars": len(text), "truncated": len(shown) < len(text),
            "exit_code": None, "duration_ms": round((time.monotonic() - req["t0"]) * 1000, 3),
            "files": []}
        if isinstance(extra, dict):
            if req["tool"] == "Bash":
                data["interrupted"] = extra.get("interrupted")
            if extra.get("filePath"):
                data["files"] = [{"path": extra["filePath"], "op": extra.get("type")}]
            if extra.get("agentId"):
                data["claude_agent_id"] = extra["agentId"]
        await self.emit(sess, "tool.completed", data, causation_id=req["event_id"])

    async def _denied(self, use_id: str, reason: str, *, reconciled: bool,
                      tool: str | None = None, tool_input: Any = None) -> None:
        if use_id in self.denied:
            return
        self.denied.add(use_id)
        self.result.denials += 1
        req = self.requests.get(use_id, {})
        sess: _Session = req.get("session") or self.main
        await self.emit(sess, "tool.denied", {
            "turn": req.get("turn"), "tool_use_id": use_id, "tool": req.get("tool") or tool,
            "input": req.get("input", tool_input), "rule": None, "reason": reason,
            "decided_by": "claude-code", "reconciled": reconciled},
            causation_id=req.get("event_id"))

    async def _finish_child(self, child: _Session, text: str, extra: Any,
                            is_error: bool) -> None:
        child.finished = True
        info = extra if isinstance(extra, dict) else {}
        await self.emit(child, "agent.finished" if not is_error else "agent.failed", {
            "status": "failed" if is_error else str(info.get("status") or "completed"),
            "final_text": _text(info.get("content")) or text, "turns": child.turns,
            "usage": _usage(info.get("usage")).model_dump(),
            "total_tokens": info.get("totalTokens"), "tool_uses": info.get("totalToolUseCount"),
            "duration_ms": info.get("totalDurationMs"), "model": info.get("resolvedModel"),
            "claude_agent_id": info.get("agentId")})

    async def _result(self, msg: dict[str, Any]) -> None:
        await self._start_main(None)
        for key in list(self.pending):
            await self._flush(key)
        for d in msg.get("permission_denials") or []:
            if isinstance(d, dict) and d.get("tool_use_id"):
                await self._denied(str(d["tool_use_id"]), "denied by claude's permission "
                                   "rules (reported in permission_denials)", reconciled=True,
                                   tool=d.get("tool_name"), tool_input=d.get("tool_input"))
        for key, sess in self.sessions.items():
            if key is not None and not sess.finished:
                sess.finished = True
                await self.emit(sess, "agent.failed", {
                    "status": "failed", "error": "the parent session ended before this "
                    "subagent returned", "turns": sess.turns})
        r = self.result
        subtype = str(msg.get("subtype") or "")
        usage = _usage(msg.get("usage"))
        r.usage = usage
        r.final_text = str(msg.get("result") or "")
        r.turns = int(msg.get("num_turns") or r.turns)
        r.claude_cost_usd = msg.get("total_cost_usd", msg.get("cost_usd"))
        r.cost_usd = self._model_usage_cost(msg.get("modelUsage"))
        is_error = bool(msg.get("is_error"))
        r.status = _STATUS.get(subtype, "failed") if not (is_error and subtype == "success") \
            else "failed"
        data: dict[str, Any] = {
            "status": r.status, "final_text": r.final_text, "turns": r.turns,
            "usage": usage.model_dump(), "model_usage": msg.get("modelUsage"),
            "cost_usd": r.cost_usd, "claude_cost_usd": r.claude_cost_usd,
            "tool_calls": r.tool_calls, "denials": r.denials,
            "duration_ms": msg.get("duration_ms"), "duration_api_ms": msg.get("duration_api_ms"),
            "stop_reason": msg.get("stop_reason"), "claude_subtype": subtype,
            "claude_session_id": msg.get("session_id"), "unparsed_lines": self.unparsed}
        self.finished = True
        if r.status == "failed":
            r.error = "; ".join(str(e) for e in msg.get("errors") or []) or r.final_text or \
                f"claude reported {subtype or 'an error'}"
            await self.emit(self.main, "agent.failed", {**data, "error": r.error,
                                                        "error_kind": subtype or "error"})
        else:
            await self.emit(self.main, "agent.finished", data)

    def _model_usage_cost(self, model_usage: Any) -> float | None:
        """Our price table over claude's per-model totals (they include subagents)."""
        if not isinstance(model_usage, dict) or not model_usage:
            return None
        total = 0.0
        for model, u in model_usage.items():
            if not isinstance(u, dict):
                return None
            cost = self.runner.catalog.cost(str(model), Usage(
                input_tokens=int(u.get("inputTokens") or 0),
                output_tokens=int(u.get("outputTokens") or 0),
                cache_read_input_tokens=int(u.get("cacheReadInputTokens") or 0),
                cache_creation_input_tokens=int(u.get("cacheCreationInputTokens") or 0)))
            if cost is None:
                return None
            total += cost
        return round(total, 8)

    async def fail(self, status: str, error: str, exit_code: int | None) -> None:
        await self._start_main(None)
        for key in list(self.pending):
            await self._flush(key)
        self.finished = True
        self.result.status = status
        self.result.error = error
        self.result.exit_code = exit_code
        await self.emit(self.main, "agent.failed", {
            "status": status, "error": error, "error_kind": status, "exit_code": exit_code,
            "turns": self.result.turns, "tool_calls": self.result.tool_calls,
            "denials": self.result.denials, "unparsed_lines": self.unparsed})


def _kill(proc: asyncio.subprocess.Process) -> None:
    """The whole process group: claude's own children (Bash tools) must not outlive it."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
