"""Live (hook) and imported (transcript) records of one real Claude Code session agree.

The real ``claude`` binary runs ``-p`` against the scripted Messages API with the hooks
``init --claude`` installs: the main agent dispatches to the seed subagent
``backend-implementer``, which writes a file, runs an allowed command and is refused a
disallowed one. The hook records it live into the project's store; then the session's
transcript (``$HOME/.claude/projects``) is imported into a second, fresh store. Both must
hold the same tool calls (tool, input, tool_use_id, outcome, including the denial) in the
same streams, the same subagent linkage, and ``replay``/``audit`` of the imported run show
the dispatch, the subagent's calls and the denial. Importing the transcript into the live
store adds no second copy of any tool call (shared derived ids).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from eventstore.model import Query, RecordedEvent
from eventstore.urls import open_store
from orchestrator.fold import fold
from tests.conftest import SHARED

ORCHESTRAIL = str(Path(sys.executable).parent / "orchestrail")


async def _read(url: str) -> list[RecordedEvent]:
    store = await open_store(url, create=False)
    try:
        assert (await store.verify()).ok
        return [e async for e in store.read(Query())]
    finally:
        await store.close()


def _calls(evs: list[RecordedEvent], sid: str) -> dict[str, list[tuple[Any, ...]]]:
    """stream -> [(tool_use_id, tool, input, status, reason)] in request order."""
    state = fold(evs, sid)
    return {f"session-{s.id}": [(c.tool_use_id, c.tool, c.input, c.status,
                                 c.reason if c.status == "denied" else None)
                                for c in s.tool_calls.values()]
            for s in state.sessions.values()}


def _started(evs: list[RecordedEvent]) -> dict[str, dict[str, Any]]:
    return {e.stream: {"agent": e.data.get("agent"), "actor": e.actor,
                       "parent": e.data.get("parent_session"),
                       "spawned_by": e.data.get("spawned_by_tool_use_id"),
                       "id": e.id}
            for e in evs if e.type == "agent.started"}


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ORCHESTRAIL, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_live_hook_and_transcript_import_agree(claude_bin: str, tmp_path: Path) -> None:
    from tests.fakes.claude_binary import hooked_project, run_print
    from tests.fakes.model_servers import AnthropicServer, Script, text, tool_use

    ws, env = hooked_project(tmp_path, ORCHESTRAIL)
    home = Path(env["HOME"])
    shutil.copy(SHARED / "seeds" / "backend-implementer.eventsource-py.md",
                ws / ".claude" / "agents" / "backend-implementer.md")
    lead = [tool_use("Agent", {"subagent_type": "backend-implementer", "description": "store",
                               "prompt": "Implement store.py with a MemoryStore class."},
                     preface="Delegating to the backend implementer."),
            text("The backend implementer finished.")]
    sub = [tool_use("Write", {"file_path": str(ws / "store.py"),
                              "content": "class MemoryStore:\n    pass\n"}),
           tool_use("Bash", {"command": "echo built-ok", "description": "check"}),
           tool_use("Bash", {"command": "rm -rf ./build", "description": "clean"}),
           text("store.py is written.")]

    def route(request: dict[str, Any]) -> dict[str, Any]:
        if "Backend Implementer" in json.dumps(request.get("system")):
            return sub.pop(0) if sub else text("sub: nothing more")
        return lead.pop(0) if lead else text("lead: nothing more")

    with AnthropicServer(Script([], fallback=route)) as api:
        result = run_print(claude_bin, ws, env, api.url, "add a store",
                           "Agent,Write,Bash(echo:*)")
    sid = result["session_id"]
    refused = result["permission_denials"][0]["tool_use_id"]
    assert not sub and (ws / "store.py").exists()

    live_url = f"sqlite:///{ws / '.orchestrail' / 'events.db'}"
    live = asyncio.run(_read(live_url))
    projects = home / ".claude" / "projects"
    assert list(projects.glob(f"*/{sid}/subagents/agent-*.meta.json"))  # today's layout
    imported_db = tmp_path / "imported.db"
    imp = _cli(env, tmp_path, "--store", f"sqlite:///{imported_db}", "import", "claude-code",
               str(projects), "--json")
    assert imp.returncode == 0, imp.stderr
    summary = json.loads(imp.stdout)
    assert summary["sessions"] == 1 and summary["bad_line_count"] == 0
    imported = asyncio.run(_read(f"sqlite:///{imported_db}"))
    assert {e.correlation_id for e in imported} == {sid}

    # every tool call: same stream, id, tool, input and outcome (the denial too)
    live_calls, imp_calls = _calls(live, sid), _calls(imported, sid)
    assert live_calls == imp_calls
    main, = [s for s in live_calls if s == f"session-{sid}"]
    agent_stream, = [s for s in live_calls if s != main]
    assert [(c[1], c[3]) for c in imp_calls[main]] == [("Agent", "ok")]
    assert [(c[1], c[3]) for c in imp_calls[agent_stream]] == [
        ("Write", "ok"), ("Bash", "ok"), ("Bash", "denied")]
    assert imp_calls[agent_stream][2][0] == refused
    assert imp_calls[agent_stream][2][2] == {"command": "rm -rf ./build",
                                             "description": "clean"}
    # subagent linkage: same stream, agent, parent and spawning call, same event id
    ls, is_ = _started(live)[agent_stream], _started(imported)[agent_stream]
    assert ls == is_
    assert is_["agent"] == "backend-implementer" and is_["parent"] == sid
    assert is_["spawned_by"] == imp_calls[main][0][0]
    assert is_["actor"] == "agent:backend-implementer"
    # both record the tool events under the same ids (the hook's derived ones)
    tool_ids = {e.id for e in live if e.type.startswith("tool.")}
    assert tool_ids == {e.id for e in imported if e.type.startswith("tool.")}

    # replay and audit of the imported run show the dispatch, the calls, the denial
    env_imp = {**env, "ORCHESTRAIL_STORE": f"sqlite:///{imported_db}"}
    replay = _cli(env_imp, tmp_path, "replay", sid, "--json")
    assert replay.returncode == 0, replay.stderr
    doc = json.loads(replay.stdout)
    sessions = {s["id"]: s for s in doc["sessions"]}
    child = sessions[agent_stream.removeprefix("session-")]
    assert child["parent_session"] == sid and child["agent"] == "backend-implementer"
    assert sessions[sid]["children"] == [child["id"]]
    assert doc["run"]["totals"]["denials"] == 1 and doc["run"]["totals"]["tool_calls"] == 4
    text_out = _cli(env_imp, tmp_path, "replay", sid).stdout
    assert "Agent" in text_out and "backend-implementer" in text_out
    assert "rm -rf ./build" in text_out and "denied" in text_out
    audit = _cli(env_imp, tmp_path, "audit", sid, "--json")
    assert audit.returncode == 0, audit.stderr
    audit_doc = json.loads(audit.stdout)
    report = json.dumps(audit_doc)
    assert "rm -rf ./build" in report and "backend-implementer" in report
    # the bridge's own types (prompts, raw hook calls, transcript records) are vocabulary,
    # not "unknown": neither the imported nor the live-recorded run is flagged for them
    assert audit_doc["unknown_types"] == []
    live_audit = _cli(env, tmp_path, "--store", live_url, "audit", sid, "--json")
    assert live_audit.returncode == 0, live_audit.stderr
    assert json.loads(live_audit.stdout)["unknown_types"] == []

    # imported into the live store: no second copy of any tool call or subagent start
    again = _cli(env, tmp_path, "--store", live_url, "import", "claude-code", str(projects),
                 "--json")
    assert again.returncode == 0, again.stderr
    merged = asyncio.run(_read(live_url))
    assert _calls(merged, sid) == live_calls
    for kind in ("tool.requested", "tool.completed", "tool.denied", "run.started",
                 "run.finished", "agent.started", "agent.finished", "prompt.submitted"):
        assert sum(e.type == kind for e in merged) == sum(e.type == kind for e in live), kind
    # what the hook cannot see is added: the model turns, with usage
    turns = [e for e in merged if e.type == "model.responded"]
    assert len(turns) == sum(e.type == "model.responded" for e in imported) == 6
    assert json.loads(again.stdout)["hook_recorded"] > 0
    merged_state = fold(merged, sid).to_dict()
    assert merged_state["run"]["totals"]["turns"] == 6
    assert merged_state["run"]["totals"]["tool_calls"] == 4
