"""``rerun``: execute a recorded run again and stop at the first place it goes another way.

Replay (``orchestrator.fold``) only reads. Rerun executes: each recorded session is driven
again by the real agent loop (``agents.loop.AgentSession``), the ``replay`` provider
serving the recorded model turns by request fingerprint, and every tool running for real
in a scratch workspace recreated from the recorded starting state (a clone of the
recorded git repository at the recorded commit). The rerun is itself a run in the store
(its own run id; ``agent.started`` carries ``rerun_of`` or ``forked_from``), so it can be
replayed, audited and diffed like any other.

Matching is by content, never by position: a model turn is served only to the request
whose fingerprint it was recorded for, and a tool call executed again is compared with
the recorded call of the same ``tool_use_id`` inside that matched turn. Tool results are
compared before the next model request is answered (``orchestrator.outcomes``: status,
exit code, timeout and error kind decide; outputs that differ after normalisation are
reported as notes with a diff), so a test that now fails stops the rerun at the pytest
call even when the model would be served the same next turn.

``live_from`` forks: turns before it are served from the recording (and checked), the
turn it names and every later one go to a live provider.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.providers.base import ModelRequest, ModelResponse, ProviderError

if TYPE_CHECKING:
    from agents.providers.base import Provider
    from eventstore.base import EventStore
    from eventstore.model import RecordedEvent
    from orchestrator.fold import RunState, Session, ToolCall
    from orchestrator.rerun_tree import TreeRerun

SCHEMA = "orchestrail.rerun/1"


class RerunError(Exception):
    """The run cannot be executed again (bad input); the message says what and why."""


@dataclass(frozen=True)
class Step:
    """Where a fork goes live: turn ``turn`` (1-based, as ``replay`` numbers turns) of the
    session whose id starts with ``session`` (None: the run's only root session)."""

    turn: int
    session: str | None = None

    @classmethod
    def parse(cls, text: str) -> Step:
        sid, _, turn = text.rpartition(":")
        if not turn.strip().isdigit() or int(turn) < 1:
            raise RerunError(f"--live-from {text!r}: expected TURN or SESSION:TURN with a "
                             "turn number >= 1 (the turn numbers `replay` shows)")
        return cls(int(turn), sid.strip() or None)


class RerunDivergence(ProviderError):
    """Raised into the agent loop to stop the rerun at the first divergence."""


# -- the scratch workspace ---------------------------------------------------------------
@dataclass
class Scratch:
    """Where one session runs again, and what of its starting state could be reproduced."""

    root: Path  # the temp directory to remove afterwards
    workspace: Path
    how: str
    notes: list[str] = field(default_factory=list)
    git: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"workspace": str(self.workspace), "how": self.how, "notes": self.notes}


async def _git(cwd: Path, *args: str, check: bool = True) -> str:
    from orchestrator.workspace import WorkspaceError, git

    try:
        return await git(cwd, *args, check=check)
    except WorkspaceError as exc:
        raise RerunError(str(exc)) from None


def _ignore_dirs(dirpath: str, names: list[str]) -> set[str]:
    from orchestrator.workspace import _COPY_IGNORE

    return {n for n in names if n in _COPY_IGNORE and n != ".git"}


async def _clone(repo: Path, commit: str, dest: Path, branch: str | None) -> None:
    await _git(dest.parent, "clone", "-q", "--shared", "--no-checkout", str(repo), str(dest))
    if branch:
        await _git(dest, "checkout", "-q", "-B", branch, commit)
    else:
        await _git(dest, "checkout", "-q", "--detach", commit)


async def _overlay(source_top: Path, dest: Path) -> int:
    """Copy the uncommitted state of ``source_top`` (changed, added, deleted, untracked
    files) over a clone of its HEAD. Ignored files are not copied."""
    out = await _git(source_top, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    entries = out.split("\0")
    n = 0
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, rel = entry[:2], entry[3:]
        paths = [rel]
        if "R" in code or "C" in code:  # rename/copy: the next entry is the old path
            old = entries[i]
            i += 1
            if "R" in code:
                (dest / old).unlink(missing_ok=True)
        for p in paths:
            if p.startswith(".orchestrail"):
                continue
            src, dst = source_top / p, dest / p
            if src.is_symlink() or src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists() or dst.is_symlink():
                    dst.unlink()
                shutil.copy2(src, dst, follow_symlinks=False)
            elif not src.exists() and (dst.exists() or dst.is_symlink()):
                dst.unlink()
            n += 1
    return n


async def scratch_from_dir(directory: Path, base: Path) -> Scratch:
    """A scratch copy of ``directory`` as it is now (``--workspace DIR``)."""
    from orchestrator.workspace import git_info

    directory = directory.resolve()
    info = await git_info(directory)
    if info and info.get("commit"):
        top = Path(info["toplevel"])
        dest = base / "repo"
        await _clone(top, info["commit"], dest, info.get("branch"))
        changed = await _overlay(top, dest)
        rel = directory.relative_to(top.resolve())
        how = (f"{directory} as it is now: commit {info['commit'][:12]}"
               + (f" plus {changed} uncommitted change(s)" if changed else ""))
        return Scratch(base, dest / rel, how, [], info)
    dest = base / "copy"
    shutil.copytree(directory, dest, symlinks=True, ignore=_ignore_dirs)
    return Scratch(base, dest, f"a copy of {directory} as it is now (not a git repository)")


async def scratch_from_record(workspace: str | None, git: dict[str, Any] | None,
                              base: Path) -> Scratch:
    """The recorded starting state: a clone of the recorded repository at the recorded
    commit; what cannot be reproduced (uncommitted changes, no git state) is noted."""
    if git and git.get("commit") and git.get("toplevel"):
        top = Path(str(git["toplevel"]))
        commit = str(git["commit"])
        if not top.is_dir():
            raise RerunError(f"the recorded repository {top} no longer exists; give "
                             "--workspace DIR to start from another directory")
        exists = await _git(top, "rev-parse", "--verify", "-q", f"{commit}^{{commit}}",
                            check=False)
        if not exists.strip():
            raise RerunError(f"commit {commit[:12]} is not in {top} any more; give "
                             "--workspace DIR to start from another directory")
        dest = base / "repo"
        await _clone(top, commit, dest, git.get("branch"))
        rel = Path(workspace).relative_to(top) if workspace and Path(workspace).is_relative_to(
            top) else Path()
        notes = []
        if git.get("dirty"):
            listed = ", ".join(str(s)[3:] for s in (git.get("status") or [])[:10])
            notes.append(f"the recorded workspace had {git.get('status_lines') or 'some'} "
                         f"uncommitted change(s) ({listed}); they were not recorded and are "
                         "not in the scratch clone, so calls that depend on them may diverge")
        return Scratch(base, dest / rel, f"{top} at the recorded commit {commit[:12]}",
                       notes, git)
    if not workspace or not Path(workspace).is_dir():
        raise RerunError(f"the run recorded no git state and its workspace {workspace} is "
                         "gone; give --workspace DIR to start from a directory")
    dest = base / "copy"
    shutil.copytree(workspace, dest, symlinks=True, ignore=_ignore_dirs)
    return Scratch(base, dest, f"a copy of {workspace} as it is now",
                   ["the run recorded no git commit (not a git repository, or recorded "
                    "before orchestrail kept git state): the workspace was copied as it is "
                    "now, which may differ from when the run started"])


# -- the provider that checks ------------------------------------------------------------
class CheckingProvider:
    """Serves recorded turns (``ReplayProvider``) after checking every tool call the rerun
    completed since the last request against the recorded call of the same id; from
    ``live_turn`` on, forwards to the live provider instead."""

    def __init__(self, recorded: Session, events: list[RecordedEvent], store: EventStore,
                 workspace: Path, *, strict: bool = False, live: Provider | None = None,
                 live_turn: int | None = None) -> None:
        from agents.providers.replay import ReplayProvider

        self.recorded = recorded
        self.replay = ReplayProvider(events=events, workspace=str(workspace))
        self.store = store
        self.workspace = workspace
        self.strict = strict
        self.live = live
        self.live_turn = live_turn
        self.name = "replay" if live is None else f"replay+{getattr(live, 'name', 'live')}"
        self.stream: str | None = None  # set once the session id is known
        self.state: RunState | None = None
        self._version = 0
        self._checked: set[str] = set()
        self.divergence: dict[str, Any] | None = None
        self.notes: list[dict[str, Any]] = []
        self.compared = 0
        self.turns_replayed = 0
        self.turns_live = 0
        self.end_of_recording: dict[str, Any] | None = None
        #: a delegating rerun (``orchestrator.rerun_tree``): a child's divergence stops
        #: this session too; the session ids of re-executed children compare as equal
        self.halt: Callable[[], dict[str, Any] | None] | None = None
        self.aliases: Callable[[], list[str]] | None = None

    def roots(self) -> list[str]:
        ws = str(self.recorded.started_data.get("workspace") or "")
        extra = self.aliases() if self.aliases is not None else []
        return [r for r in (ws, str(self.workspace), *extra) if r]

    async def check(self) -> None:
        """Fold what the rerun recorded since the last check; compare finished calls."""
        from orchestrator.fold import RunState
        from orchestrator.outcomes import compare_calls, describe

        if self.stream is None:
            return
        if self.state is None:
            self.state = RunState(self.stream)
        async for ev in self.store.read_stream(self.stream, self._version):
            self.state.apply(ev)
            self._version = ev.version + 1
        session = self.state.sessions.get(self.stream[8:])
        if session is None:
            return
        for call in sorted(session.tool_calls.values(), key=lambda c: c.position):
            if call.tool_use_id in self._checked or call.status == "pending":
                continue
            self._checked.add(call.tool_use_id)
            rec = self.recorded.tool_calls.get(call.tool_use_id)
            if rec is None:
                continue  # a live turn's call: nothing recorded to compare with
            self.compared += 1
            diff = compare_calls(rec, call, self.roots(), strict=self.strict)
            if diff is None:
                continue
            entry = {"session": self.recorded.id, "agent": self.recorded.agent,
                     "turn": call.turn, "kind": "tool_result",
                     "tool_use_id": call.tool_use_id, "tool": call.tool,
                     "input": call.input, "recorded": describe(rec), "now": describe(call),
                     "difference": diff["kind"], "fields": diff["fields"],
                     "divergent": diff["divergent"], "output_diff": diff["output_diff"]}
            if diff["divergent"]:
                entry["message"] = _call_message(rec, call, diff)
                self.divergence = entry
                raise RerunDivergence(f"rerun divergence: {entry['message']}")
            self.notes.append(entry)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        from agents.fingerprint import fingerprint
        from agents.providers.replay import Divergence

        turn = 1 + sum(1 for m in request.messages if m.role == "assistant")
        stopped = self.halt() if self.halt is not None else None
        if stopped is None:
            await self.check()
        else:  # its Agent call failed because of that: not a divergence of its own
            self.divergence = {
                "session": self.recorded.id, "agent": self.recorded.agent, "turn": turn,
                "kind": "child", "child": stopped.get("session"),
                "message": f"stopped at turn {turn}: a session it delegated to diverged "
                           f"({stopped.get('message')})"}
            raise RerunDivergence(f"rerun divergence: {self.divergence['message']}")
        if self.live is not None and self.live_turn is not None and turn >= self.live_turn:
            self.turns_live += 1
            return await self.live.complete(request)
        try:
            response = await self.replay.complete(request)
        except Divergence as exc:
            fp = fingerprint(request.messages, self.roots())
            ended = next((t for t in self.recorded.turns.values()
                          if t.fingerprint == fp and t.status != "responded"), None)
            if ended is not None:  # the recording stops here too: nothing diverged
                last = ended.attempts[-1] if ended.attempts else {}
                why = (f"its model call failed: {last.get('error')}"
                       if ended.status == "failed" else "it stopped while the model was called")
                self.end_of_recording = {
                    "turn": ended.number, "status": ended.status, "error": last.get("error"),
                    "message": f"the recorded session has no answer for turn {ended.number} "
                               f"({why}); the rerun reached the same point"}
                raise RerunDivergence(self.end_of_recording["message"]) from None
            rec_turn = self.recorded.turns.get(turn)
            self.divergence = {
                "session": self.recorded.id, "agent": self.recorded.agent, "turn": turn,
                "kind": "request", "fingerprint": exc.fingerprint,
                "recorded_fingerprint": rec_turn.fingerprint if rec_turn else None,
                "message": f"turn {turn}: the conversation the model would be shown differs "
                           "from every recorded one (no recorded model turn has fingerprint "
                           f"{exc.fingerprint[:16]})"}
            raise RerunDivergence(f"rerun divergence: {self.divergence['message']}") from None
        self.turns_replayed += 1
        return response

    async def aclose(self) -> None:
        if self.live is not None:
            await self.live.aclose()


def _short(value: Any, n: int = 80) -> str:
    from orchestrator.progress import tool_subject

    text = tool_subject(value) or str(value)
    return text if len(text) <= n else text[:n - 1] + "…"


def _call_message(rec: ToolCall, now: ToolCall, diff: dict[str, Any]) -> str:
    from orchestrator.outcomes import outcome, outcome_text

    what = f"turn {now.turn}, {now.tool} {_short(now.input)}"
    if diff["kind"] == "output":
        return f"{what}: the output differs (strict comparison)"
    return f"{what}: recorded {outcome_text(outcome(rec))}, now {outcome_text(outcome(now))}"


# -- recorded approvals --------------------------------------------------------------------
class RecordedApprover:
    """Answers an 'ask' with the decision recorded for the same tool and input (in
    recorded order); one that was never asked is denied, saying so."""

    def __init__(self, recorded: Session) -> None:
        import json

        self._answers: dict[str, list[bool]] = {}
        for call in sorted(recorded.tool_calls.values(), key=lambda c: c.position):
            a = call.approval or {}
            if "approved" in a:
                key = f"{call.tool}:{json.dumps(call.input, sort_keys=True, default=str)}"
                self._answers.setdefault(key, []).append(bool(a.get("approved")))

    async def resolve(self, request: Any) -> Any:
        import json

        from agents.approval import _final

        key = f"{request.tool}:{json.dumps(dict(request.tool_input), sort_keys=True, default=str)}"
        answers = self._answers.get(key)
        if not answers:
            return _final(request, "deny", "rerun: no recorded approval for this call",
                          "approver:rerun")
        ok = answers.pop(0)
        return _final(request, "allow" if ok else "deny",
                      f"rerun: the recorded approver {'allowed' if ok else 'refused'} it",
                      "approver:rerun")


# -- one session, one run ------------------------------------------------------------------
@dataclass
class RerunOptions:
    workspace: Path | None = None  # start from this directory instead of the record
    live_from: Step | None = None
    live: Callable[[], Provider] | None = None  # makes the live provider of a fork
    live_name: str | None = None
    strict: bool = False
    keep: bool | None = None  # None: keep the scratch workspace only after a divergence
    run_id: str | None = None
    on_progress: Callable[[str, dict[str, Any]], None] | None = None
    config: Any = None  # eventstore Config (model catalog, prices)


def _definition(name: str, workspace: Path, started: dict[str, Any], notes: list[str]) -> Any:
    from agents.definition import load_definition
    from agents.discovery import load_agents
    from agents.errors import AgentError

    try:
        definition = load_agents(workspace).get(name)
    except AgentError:
        source = started.get("definition_source")
        if not source or not Path(source).is_file():
            raise RerunError(f"agent {name!r}: its definition is not in the scratch workspace "
                             f"and the recorded file {source} is gone") from None
        definition = load_definition(Path(source))
        notes.append(f"agent {name!r} is not defined in the scratch workspace; used "
                     f"{source} as it is now")
    recorded = started.get("definition_hash")
    if recorded and recorded != definition.definition_hash:
        notes.append(f"agent {name!r}: its definition changed since the run (recorded "
                     f"{str(recorded)[:12]}, now {definition.definition_hash[:12]}); "
                     "its permission rules now apply")
    return definition


async def rerun_session(store: EventStore, recorded: Session, events: list[RecordedEvent],
                        scratch: Scratch, opts: RerunOptions, run_id: str,
                        origin: str, *, session_kw: dict[str, Any] | None = None,
                        tree: TreeRerun | None = None) -> dict[str, Any]:
    """Run one recorded session again in ``scratch``; its part of the report.
    ``session_kw``/``tree``: where it hangs in a delegating rerun (``rerun_tree``)."""
    from agents.loop import AgentSession, Budgets
    from agents.models import ModelCatalog
    from agents.permissions import PermissionEngine, load_settings
    from agents.tools import minimal_env

    started = recorded.started_data
    ws = scratch.workspace
    definition = _definition(str(recorded.agent), ws, started, scratch.notes)
    settings = load_settings(ws)
    engine = PermissionEngine.for_agent(
        definition, ws, rules=settings.rules, mode=started.get("permission_mode"),
        additional_dirs=settings.additional_directories)
    live = live_turn = None
    if opts.live_from is not None and opts.live is not None:
        live, live_turn = opts.live(), opts.live_from.turn
    provider = CheckingProvider(recorded, events, store, ws, strict=opts.strict, live=live,
                                live_turn=live_turn)
    if tree is not None:
        provider.halt, provider.aliases = tree.halted, tree.aliases
    raw = started.get("budgets")
    budgets: dict[str, Any] = raw if isinstance(raw, dict) else {}
    known = {"max_turns", "max_tokens", "max_cost_usd", "max_wall_seconds"}
    catalog = ModelCatalog.from_config(opts.config)
    env = minimal_env(str(ws))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    link_key = "forked_from" if opts.live_from is not None else "rerun_of"
    link: dict[str, Any] = {"run_id": origin, "session_id": recorded.id}
    if opts.live_from is not None:
        link["live_from_turn"] = opts.live_from.turn
    extra: dict[str, Any] = {link_key: link, "rerun_workspace": scratch.to_dict()}
    if started.get("role"):
        extra["role"] = started["role"]
    if scratch.git:
        extra["git"] = scratch.git
    session = AgentSession(
        definition, str(started.get("prompt") or ""), provider=provider, store=store,
        workspace=ws, model=recorded.model or definition.model,
        provider_name=provider.name, run_id=run_id,
        budgets=Budgets(**{k: v for k, v in budgets.items() if k in known}), engine=engine,
        approver=RecordedApprover(recorded), cost_fn=catalog.cost, env=env,
        on_progress=opts.on_progress, started_extra=extra, **(session_kw or {}))
    env["ORCHESTRAIL_SESSION_ID"] = session.session_id
    provider.stream = session.stream
    try:
        result = await session.run()
    finally:
        await provider.aclose()
    if provider.divergence is None and provider.end_of_recording is None:
        try:
            await provider.check()  # the last turn's calls, when no request followed them
        except RerunDivergence:
            pass
    divergence = provider.divergence
    if divergence is None and provider.end_of_recording is None and live is None:
        rec_status = recorded.status
        if result.status != rec_status:
            divergence = {"session": recorded.id, "agent": recorded.agent,
                          "turn": result.turns, "kind": "session",
                          "recorded": {"status": rec_status, "turns": len(recorded.turns)},
                          "now": {"status": result.status, "turns": result.turns,
                                  "error": result.error},
                          "message": f"the session ended {result.status} after "
                                     f"{result.turns} turn(s); the recorded one ended "
                                     f"{rec_status} after {len(recorded.turns)}"}
    return {"recorded_session": recorded.id, "session": session.session_id,
            "agent": recorded.agent, "recorded_status": recorded.status,
            "status": result.status, "error": None if divergence else result.error,
            "turns_replayed": provider.turns_replayed, "turns_live": provider.turns_live,
            "tool_calls_compared": provider.compared, "divergence": divergence,
            "end_of_recording": provider.end_of_recording, "notes": provider.notes,
            "final_text": result.final_text, "workspace": scratch.to_dict()}


async def rerun_in_scratch(store: EventStore, state: RunState, s: Session,
                           events: list[RecordedEvent], opts: RerunOptions, run_id: str,
                           origin: str, report: dict[str, Any], *,
                           session_kw: dict[str, Any] | None = None,
                           tree: TreeRerun | None = None) -> dict[str, Any]:
    """``rerun_session`` in a fresh scratch workspace (the recorded start, or
    ``--workspace``), its part added to ``report`` where it started; the scratch removed
    unless kept (by default: kept after a divergence)."""
    base = Path(tempfile.mkdtemp(prefix="orchestrail-rerun-"))
    try:
        if opts.workspace is not None:
            scratch = await scratch_from_dir(opts.workspace, base)
        else:
            workspace, git = await _start_state(store, state, s)
            scratch = await scratch_from_record(workspace, git, base)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    slot = len(report["sessions"])
    report["sessions"].append(None)  # its place: children run (and report) before it ends
    try:
        part = await rerun_session(store, s, events, scratch, opts, run_id, origin,
                                   session_kw=session_kw, tree=tree)
    except BaseException:  # bad input found late, Ctrl-C: leave no scratch behind
        if not opts.keep:
            shutil.rmtree(base, ignore_errors=True)
        raise
    report["sessions"][slot] = part
    report["notes"].extend(part["notes"])
    report["reproduction"].append({"session": s.id, **scratch.to_dict()})
    keep = opts.keep if opts.keep is not None else part["divergence"] is not None
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
        part["workspace"]["removed"] = True
    return part


def _roots(state: RunState) -> list[Session]:
    roots = [s for s in state.sessions.values() if not s.parent_session]
    return sorted(roots, key=lambda s: (s.started_at is None, s.started_at, s.id))


def check_rerunnable(state: RunState, live_from: Step | None) -> list[Session]:
    """The root sessions to run again, or a ``RerunError`` saying why the run cannot be."""
    if state.events == 0:
        raise RerunError(f"run {state.run_id}: no events (all removed by retention?)")
    gone = [s.id for s in state.sessions.values()
            if not s.seen and f"session-{s.id}" in state.removed]
    if gone:
        raise RerunError(f"run {state.run_id}: the events of session(s) {', '.join(gone)} "
                         "were removed by retention; it cannot be executed again (`replay` "
                         "shows what remains)")
    roots = _roots(state)
    if not roots:
        raise RerunError(f"run {state.run_id}: no agent sessions to run again")
    children = [c for c in state.sessions.values() if c.parent_session]
    for s in [*roots, *children]:
        if s.provider == "claude-code" or not any(t.fingerprint for t in s.turns.values()):
            raise RerunError(f"session {s.id} ({s.agent}) has no model turns with request "
                             "fingerprints (recorded by the Claude Code hook or the claude-code "
                             "provider); only sessions of orchestrail's own agent loop can "
                             "be executed again")
    if live_from is not None and children:
        raise RerunError(f"--live-from: run {state.run_id} delegated to subagents (Agent "
                         "tool); a fork of a delegating run is not supported (a live model's "
                         "Agent calls have no recorded subagent sessions to run again)")
    if live_from is not None:
        if live_from.session is None and len(roots) > 1:
            raise RerunError(f"--live-from {live_from.turn}: the run has {len(roots)} "
                             "sessions; name one as SESSION:TURN")
        forked = roots
        if live_from.session is not None:
            forked = [s for s in roots if s.id.startswith(live_from.session)]
            if len(forked) != 1:
                raise RerunError(f"--live-from: {len(forked)} sessions of the run start with "
                                 f"{live_from.session!r}")
        turns = len(forked[0].turns)
        if live_from.turn > turns:
            raise RerunError(f"--live-from {live_from.turn}: session {forked[0].id} has "
                             f"{turns} recorded turn(s); the live model can take over at "
                             f"turn 1 to {turns}")
    return roots


async def _start_state(store: EventStore, state: RunState, s: Session
                       ) -> tuple[str | None, dict[str, Any] | None]:
    """(workspace, git state) a session started from: ``agent.started`` of an ``agents
    run``; for a task of ``orchestrail run``, its worktree's base commit in the project."""
    started = s.started_data
    git = started.get("git") if isinstance(started.get("git"), dict) else None
    cfg = state.config
    project_git = cfg.get("git") if isinstance(cfg.get("git"), dict) else None
    if git is None and s.task_id is None and started.get("role") == "lead" and project_git:
        return str(project_git.get("toplevel")), project_git  # the lead reads the project
    if git is not None or s.task_id is None:
        return started.get("workspace"), git
    from eventstore.model import Query

    async for ev in store.read(Query(stream=f"run-{state.run_id}",
                                     types=("task.dispatched",))):
        if ev.data.get("session_id") == s.id and isinstance(ev.data.get("workspace"), dict):
            ws = ev.data["workspace"]
            if project_git and ws.get("base"):
                return str(project_git.get("toplevel")), {
                    **project_git, "commit": ws["base"], "branch": None, "dirty": False}
    return started.get("workspace"), project_git


async def rerun(store: EventStore, run_id: str, opts: RerunOptions) -> dict[str, Any]:
    """Execute run ``run_id`` again; the report (``SCHEMA``)."""
    from eventstore.canonical import uuid7
    from orchestrator.cli.replay import load_run

    state = await load_run(store, run_id)
    roots = check_rerunnable(state, opts.live_from)
    new_run = opts.run_id or f"rerun-{uuid7()}"
    report: dict[str, Any] = {
        "schema": SCHEMA, "run_id": new_run,
        "rerun_of" if opts.live_from is None else "forked_from": run_id,
        "live_from": None if opts.live_from is None else {
            "turn": opts.live_from.turn, "session": opts.live_from.session,
            "provider": opts.live_name},
        "strict": opts.strict, "sessions": [], "divergence": None, "notes": [],
        "reproduction": []}
    if any(s.parent_session for s in state.sessions.values()):
        return await _rerun_tree(store, state, opts, new_run, run_id, report)
    for s in roots:
        events = [ev async for ev in store.read_stream(f"session-{s.id}")]
        fork = opts.live_from
        this_opts = opts
        if fork is not None and fork.session is not None and not s.id.startswith(fork.session):
            from dataclasses import replace

            this_opts = replace(opts, live_from=None, live=None)
        part = await rerun_in_scratch(store, state, s, events, this_opts, new_run, run_id,
                                      report)
        if part["divergence"] is not None:
            report["divergence"] = part["divergence"]
            break
    report["status"] = ("diverged" if report["divergence"] else
                        "forked" if opts.live_from is not None else "same")
    return report


async def _rerun_tree(store: EventStore, state: RunState, opts: RerunOptions, new_run: str,
                      origin: str, report: dict[str, Any]) -> dict[str, Any]:
    """A run whose sessions delegated: roots run again, children through their callers'
    Agent calls (``orchestrator.rerun_tree``)."""
    from orchestrator.execute import _new_id
    from orchestrator.rerun_tree import TreeRerun, check_tree, read_recording, tree_roots

    rec = await read_recording(store, state)
    check_tree(state, rec)
    tree = TreeRerun(store, state, rec, opts, new_run, origin, report)
    max_depth = int((rec.lead or {}).get("max_depth") or 2)
    if state.started_at is not None:  # the run's frame: its tasks (run, or not, alike)
        await tree.append("run.started", {"tasks": list(state.config.get("tasks") or []),
                                          "rerun_of": {"run_id": origin}}, None)
    for s in tree_roots(state, rec):
        sid = _new_id()
        cause = await tree.start_lead(s, sid)
        await tree.session(s, sid, {"delegate": tree.delegate, "max_depth": max_depth,
                                    **({"causation_id": cause} if cause else {})})
        if tree.divergence is not None:
            break
    report["divergence"] = tree.divergence
    if state.started_at is not None and state.finished_at is not None and not tree.divergence:
        # the same sessions did the same: the run ends as recorded (tasks a lead never
        # dispatched are as not run as they were); after a divergence the lead's end says
        await tree.append("run.finished", {"status": state.status,
                                           "rerun_of": {"run_id": origin}}, None)
    report["reviews_rerun"] = tree.reviews_rerun
    report["status"] = "diverged" if tree.divergence else "same"
    return report
