"""``orchestrail hook`` and ``init --claude``, through the real console script.

Every test runs the installed ``orchestrail`` as Claude Code would (a fresh process, JSON
on stdin) against a real SQLite file, then reads the trail back through the store API and
checks the chains. The last test runs the real ``claude`` binary against the scripted
Messages API with hooks installed by ``init --claude``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from eventstore.model import Query, RecordedEvent
from eventstore.urls import open_store

ORCHESTRAIL = str(Path(sys.executable).parent / "orchestrail")
SID = "5f0e7a52-1c1e-4c55-9a0b-8d7f8f3c2a11"
AGENT = "a6b113e5a195c2900"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCHESTRAIL_", "CLAUDE_"))}
    env["ORCHESTRAIL_STORE"] = f"sqlite:///{tmp / 'events.db'}"
    env.update(extra)
    return env


def hook(payload: dict[str, Any] | bytes, cwd: Path, env: dict[str, str],
         *args: str) -> subprocess.CompletedProcess[bytes]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    proc = subprocess.run([ORCHESTRAIL, "hook", *args], input=raw, cwd=cwd, env=env,
                          capture_output=True, timeout=60)
    if not args:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"", proc.stdout  # Claude Code would parse it
    return proc


async def read_all(url: str) -> list[RecordedEvent]:
    store = await open_store(url, create=False)
    try:
        report = await store.verify()
        assert report.ok, report
        return [e async for e in store.read(Query())]
    finally:
        await store.close()


def events(tmp: Path) -> list[RecordedEvent]:
    return asyncio.run(read_all(f"sqlite:///{tmp / 'events.db'}"))


def common(event: str, **fields: Any) -> dict[str, Any]:
    return {"session_id": SID, "transcript_path": f"/home/u/.claude/projects/p/{SID}.jsonl",
            "cwd": "/work/proj", "permission_mode": "default", "hook_event_name": event,
            **fields}


def write_transcript(path: Path, denied_id: str) -> None:
    """A transcript tail as claude writes it in -p mode for a refused Bash call."""
    lines = [
        {"type": "assistant", "uuid": "u1", "sessionId": SID, "message": {
            "id": "msg_1", "role": "assistant", "content": [
                {"type": "tool_use", "id": denied_id, "name": "Bash",
                 "input": {"command": "rm -rf /", "description": "clean"}}]}},
        {"type": "user", "uuid": "u2", "sessionId": SID, "message": {
            "role": "user", "content": [
                {"type": "tool_result", "tool_use_id": denied_id, "is_error": True,
                 "content": "Claude requested permissions to use Bash, but you haven't "
                            "granted it yet."}]},
         "toolUseResult": "Error: permission denied"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"type\": \"assis")


# --------------------------------------------------------------------------------------
def test_every_documented_event_maps_onto_the_vocabulary(tmp_path: Path) -> None:
    env = _env(tmp_path)
    transcript = tmp_path / f"{SID}.jsonl"
    write_transcript(transcript, "toolu_denied")
    sub_tx = tmp_path / "agent.jsonl"
    sub_tx.write_text("")
    sub = {"agent_id": AGENT, "agent_type": "backend-implementer"}
    seq = [
        common("SessionStart", source="startup", model="claude-sonnet-5"),
        common("UserPromptSubmit", prompt="add a store; key sk-ant-abcdefghijklmnop0123"),
        common("PreToolUse", tool_name="Agent", tool_use_id="toolu_agent",
               tool_input={"subagent_type": "backend-implementer", "description": "store",
                           "prompt": "Implement store.py"}),
        common("SubagentStart", **sub),
        common("PreToolUse", tool_name="Write", tool_use_id="toolu_w", **sub,
               tool_input={"file_path": "/work/proj/store.py", "content": "x = 1\n"}),
        common("PostToolUse", tool_name="Write", tool_use_id="toolu_w", **sub,
               tool_input={"file_path": "/work/proj/store.py", "content": "x = 1\n"},
               tool_response={"type": "create", "filePath": "/work/proj/store.py"},
               duration_ms=3),
        common("PreToolUse", tool_name="Bash", tool_use_id="toolu_b", **sub,
               tool_input={"command": "false"}),
        common("PostToolUseFailure", tool_name="Bash", tool_use_id="toolu_b", **sub,
               tool_input={"command": "false"}, error="Exit code 1", duration_ms=5),
        common("SubagentStop", stop_hook_active=False, agent_transcript_path=str(sub_tx),
               last_assistant_message="store.py is written.", **sub),
        common("PostToolUse", tool_name="Agent", tool_use_id="toolu_agent",
               tool_input={"subagent_type": "backend-implementer"},
               tool_response={"status": "completed", "agentId": AGENT,
                              "content": [{"type": "text", "text": "done"}]}),
        common("PermissionRequest", tool_name="Bash", tool_input={"command": "curl x"},
               permission_suggestions=[{"type": "addRules"}]),
        common("PreToolUse", tool_name="Bash", tool_use_id="toolu_pd",
               tool_input={"command": "curl x"}),
        common("PermissionDenied", tool_name="Bash", tool_use_id="toolu_pd",
               tool_input={"command": "curl x"}, reason="auto mode classifier"),
        common("PreToolUse", tool_name="Bash", tool_use_id="toolu_denied",
               tool_input={"command": "rm -rf /", "description": "clean"}),
        common("Notification", message="Claude needs your permission",
               notification_type="permission_prompt"),
        common("PreCompact", trigger="auto", custom_instructions=""),
        common("PostCompact", trigger="auto", compact_summary="summary"),
        common("Stop", stop_hook_active=False, last_assistant_message="All done.",
               background_tasks=[], session_crons=[],
               transcript_path=str(transcript)),
        common("StopFailure", error="rate_limit"),
        common("SessionEnd", reason="prompt_input_exit"),
    ]
    for payload in seq:
        hook(payload, tmp_path, env)
    # a second Stop (interactive sessions stop after every turn) adds no second denial
    hook(seq[-3], tmp_path, env)

    evs = events(tmp_path)
    assert all(e.correlation_id == SID for e in evs)
    by_id = {e.id: e for e in evs}
    run = [e for e in evs if e.stream == f"run-{SID}"]
    assert [e.type for e in run] == ["run.started", "run.finished"]
    assert run[0].data["model"] == "claude-sonnet-5" and run[1].data["reason"] == \
        "prompt_input_exit"
    main = [e for e in evs if e.stream == f"session-{SID}"]
    assert [e.type for e in main] == [
        "agent.started", "prompt.submitted", "tool.requested", "tool.completed",
        "approval.requested", "tool.requested", "tool.denied", "tool.requested",
        "claude.hook.Notification", "claude.hook.PreCompact", "claude.hook.PostCompact",
        "tool.denied", "agent.finished", "agent.failed", "agent.finished"]
    assert all(e.actor == "claude-code" for e in main)
    assert "sk-ant-" not in main[1].data["prompt"]  # redacted before hashing
    assert by_id[main[0].causation_id].type == "run.started"
    agent_done = main[3]
    assert agent_done.data["claude_agent_id"] == AGENT
    assert by_id[agent_done.causation_id].data["tool_use_id"] == "toolu_agent"
    assert main[6].data["reason"] == "auto mode classifier"
    assert main[6].data["reconciled"] is False
    reconciled = main[11]
    assert reconciled.data["tool_use_id"] == "toolu_denied" and reconciled.data["reconciled"]
    assert "haven't granted" in reconciled.data["reason"]
    assert reconciled.data["input"]["command"] == "rm -rf /"
    assert by_id[reconciled.causation_id].data["tool_use_id"] == "toolu_denied"
    assert main[8].data["notification_type"] == "permission_prompt"
    assert main[12].data["final_text"] == "All done."
    assert main[4].data["tool"] == "Bash"

    subs = [e for e in evs if e.stream == f"session-{AGENT}"]
    assert [e.type for e in subs] == ["agent.started", "tool.requested", "tool.completed",
                                      "tool.requested", "tool.completed", "agent.finished"]
    assert all(e.actor == "agent:backend-implementer" for e in subs)
    started = subs[0]
    assert started.data["parent_session"] == SID
    assert started.data["spawned_by_tool_use_id"] == "toolu_agent"
    assert by_id[started.causation_id].stream == f"session-{SID}"
    assert subs[2].data["files"] == [{"path": "/work/proj/store.py", "op": "create"}]
    assert subs[2].data["is_error"] is False and subs[2].data["duration_ms"] == 3
    assert subs[4].data["is_error"] is True and subs[4].data["error"] == "Exit code 1"
    for done in (subs[2], subs[4]):
        assert by_id[done.causation_id].data["tool_use_id"] == done.data["tool_use_id"]
    assert subs[5].causation_id == started.id
    assert subs[5].data["final_text"] == "store.py is written."
    assert all(e.metadata["source"] == "claude-code-hook" for e in evs)


def test_unknown_event_and_bad_stdin_are_recorded_and_exit_0(tmp_path: Path) -> None:
    env = _env(tmp_path)
    hook(common("SomethingNew2027", widget={"a": 1}, agent_id="ab", agent_type="x y"),
         tmp_path, env)
    hook(common("Weird Event/Name!"), tmp_path, env)
    hook(b'{"session_id": "' + SID.encode() + b'", "hook_event_name": "PreToo', tmp_path, env)
    hook(b"\x00\xff\xfe binary \x89PNG", tmp_path, env)
    hook(b"", tmp_path, env)
    hook(b"[1, 2, 3]", tmp_path, env)
    hook(b'{"session_id": "s", "x": NaN}', tmp_path, env)
    hook(b'{"session_id": "bad id with spaces/..", "hook_event_name": "Stop"}', tmp_path, env)
    evs = events(tmp_path)
    assert evs[0].type == "claude.hook.SomethingNew2027" and evs[0].stream == "session-ab"
    assert evs[0].data["widget"] == {"a": 1} and evs[0].actor == "agent:x_y"
    assert evs[1].type == "claude.hook.Weird_Event_Name_"
    assert evs[1].data["hook_event_name"] == "Weird Event/Name!"
    errors = [e for e in evs if e.type == "claude.hook.error"]
    assert len(errors) == 5
    assert "not valid JSON" in errors[0].data["error"]
    assert errors[0].data["raw"].startswith('{"session_id"')
    assert "not UTF-8" in errors[1].data["error"] and errors[1].data["raw_bytes"] == 15
    assert "empty stdin" in errors[2].data["error"]
    assert "must be an object" in errors[3].data["error"]
    assert "NaN" in errors[4].data["error"]
    assert all(e.stream == "claude-hooks" for e in errors)
    assert evs[-1].type == "agent.finished" and evs[-1].stream.startswith("session-bad_id")


def test_concurrent_hook_processes_lose_nothing(tmp_path: Path) -> None:
    env = _env(tmp_path)
    n, per = 8, 6
    procs = []
    for i in range(n):
        script = "\n".join(
            json.dumps(common("PreToolUse", session_id="shared", tool_name="Bash",
                              tool_use_id=f"t{i}-{j}", tool_input={"command": f"echo {j}"}))
            for j in range(per))
        # each worker: `per` hook processes back to back, all workers at once
        procs.append(subprocess.Popen(
            [sys.executable, "-c",
             "import subprocess,sys\n"
             "for line in sys.stdin.read().splitlines():\n"
             f"    p = subprocess.run([{ORCHESTRAIL!r}, 'hook'], input=line.encode(),"
             " capture_output=True)\n"
             "    assert p.returncode == 0 and p.stdout == b''\n"],
            stdin=subprocess.PIPE, cwd=tmp_path, env=env))
        assert procs[-1].stdin is not None
        procs[-1].stdin.write(script.encode())
        procs[-1].stdin.close()
    for p in procs:
        assert p.wait(timeout=120) == 0
    evs = events(tmp_path)
    assert len(evs) == n * per
    assert sorted(e.version for e in evs) == list(range(n * per))
    assert [e.position for e in evs] == list(range(1, n * per + 1))
    assert not (tmp_path / ".orchestrail" / "hook-spool.jsonl").exists()
    verify = subprocess.run([ORCHESTRAIL, "verify"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and f"ok: {n * per} events" in verify.stdout


def _spooled(tmp: Path) -> list[str]:
    """Lines waiting: the live spool and any file a failed delivery left taken."""
    folder = tmp / ".orchestrail"
    files = [*sorted(folder.glob("hook-spool.*.flushing")), folder / "hook-spool.jsonl"]
    return [line for f in files if f.exists() for line in f.read_text().splitlines()]


def _spool_files(tmp: Path) -> list[Path]:
    folder = tmp / ".orchestrail"
    return [*folder.glob("hook-spool*.jsonl"), *folder.glob("hook-spool.*.flushing")]


def test_locked_store_spools_then_flush_delivers_exactly_once(tmp_path: Path) -> None:
    env = _env(tmp_path, ORCHESTRAIL_HOOK_BUSY_MS="200")
    hook(common("SessionStart", source="startup"), tmp_path, env)  # creates the store
    lock = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(3):
            hook(common("PreToolUse", tool_name="Read", tool_use_id=f"r{i}",
                        tool_input={"file_path": f"/f{i}"}), tmp_path, env)
        assert len(_spooled(tmp_path)) == 3
        # while the spool holds lines, a new hook queues behind them (order kept)
        hook(common("PreToolUse", tool_name="Read", tool_use_id="r3",
                    tool_input={"file_path": "/f3"}), tmp_path, env)
        spooled = [json.loads(line)["raw"] for line in _spooled(tmp_path)]
        assert [json.loads(r)["tool_use_id"] for r in spooled] == ["r0", "r1", "r2", "r3"]
        failed = hook(b"", tmp_path, env, "--flush")
        assert failed.returncode == 1 and b"not delivered" in failed.stderr
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert len(events(tmp_path)) == 2  # SessionStart: run.started + agent.started
    first = hook(b"", tmp_path, env, "--flush")
    assert first.returncode == 0, first.stderr
    assert b"delivered 4 spooled hook call(s), 4 new event(s)" in first.stdout
    second = hook(b"", tmp_path, env, "--flush")
    assert b"delivered 0 spooled" in second.stdout
    evs = events(tmp_path)
    assert [e.data.get("tool_use_id") for e in evs] == [None, None, "r0", "r1", "r2", "r3"]
    assert not _spool_files(tmp_path)


def test_redelivering_a_taken_spool_adds_nothing(tmp_path: Path) -> None:
    """A crash after commit but before the spool file was deleted: delivered again, no dup."""
    env = _env(tmp_path, ORCHESTRAIL_HOOK_BUSY_MS="200")
    lock_db = tmp_path / "events.db"
    hook(common("SessionStart", source="startup"), tmp_path, env)
    lock = sqlite3.connect(lock_db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    hook(common("UserPromptSubmit", prompt="p1"), tmp_path, env)
    hook(common("Notification", message="m", notification_type="idle_prompt"), tmp_path, env)
    lock.execute("ROLLBACK")
    lock.close()
    saved = "\n".join(_spooled(tmp_path)) + "\n"
    assert len(_spooled(tmp_path)) == 2
    assert b"delivered 2" in hook(b"", tmp_path, env, "--flush").stdout
    (tmp_path / ".orchestrail" / "hook-spool.0000.flushing").write_text(saved)
    # the next ordinary hook notices the leftover and delivers it first
    hook(common("Stop", stop_hook_active=False, last_assistant_message="ok"), tmp_path, env)
    evs = events(tmp_path)
    assert [e.type for e in evs] == ["run.started", "agent.started", "prompt.submitted",
                                     "claude.hook.Notification", "agent.finished"]
    assert not _spool_files(tmp_path)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_unreachable_postgres_spools_and_exits_0(tmp_path: Path) -> None:
    url = f"postgresql://root@127.0.0.1:{_closed_port()}/nothing"
    env = _env(tmp_path, ORCHESTRAIL_STORE=url, ORCHESTRAIL_HOOK_BUSY_MS="400")
    proc = hook(common("PreToolUse", tool_name="Bash", tool_use_id="p1",
                       tool_input={"command": "ls"}), tmp_path, env)
    assert b"spooled" in proc.stderr
    lines = _spooled(tmp_path)
    assert len(lines) == 1 and json.loads(lines[0])["raw"].startswith('{"session_id"')
    # the store comes back (here: the run's SQLite file); the spool goes there once
    env["ORCHESTRAIL_STORE"] = f"sqlite:///{tmp_path / 'events.db'}"
    assert b"delivered 1" in hook(b"", tmp_path, env, "--flush").stdout
    assert b"delivered 0" in hook(b"", tmp_path, env, "--flush").stdout
    assert [e.type for e in events(tmp_path)] == ["tool.requested"]


def test_init_claude_merges_without_losing_anything(tmp_path: Path) -> None:
    env = _env(tmp_path)
    claude_dir = tmp_path / ".claude"
    (claude_dir / "agents").mkdir(parents=True)
    (claude_dir / "agents" / "reviewer.md").write_text("mine\n")
    original = {
        "model": "opus", "permissions": {"allow": ["Bash(npm test)"]},
        "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": "./guard.sh"}]}]},
    }
    (claude_dir / "settings.json").write_text(json.dumps(original))

    def init(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ORCHESTRAIL, "init", "--claude", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60)

    out = init()
    assert out.returncode == 0, out.stderr
    settings = json.loads((claude_dir / "settings.json").read_text())
    assert settings["model"] == "opus" and settings["permissions"] == original["permissions"]
    pre = settings["hooks"]["PreToolUse"]
    assert pre[0] == original["hooks"]["PreToolUse"][0]
    ours = pre[1]["hooks"][0]
    assert ours["type"] == "command" and ours["command"].endswith("orchestrail hook")
    assert Path(ours["command"].split()[0]).is_absolute()
    for event in ("SessionStart", "UserPromptSubmit", "PostToolUse", "PostToolUseFailure",
                  "PermissionRequest", "PermissionDenied", "SubagentStart", "SubagentStop",
                  "Stop", "SessionEnd", "Notification", "PreCompact", "PostCompact"):
        assert settings["hooks"][event][-1]["hooks"][0]["command"] == ours["command"]
    assert "WorktreeCreate" not in settings["hooks"]
    assert json.loads((claude_dir / "settings.json.bak").read_text()) == original
    assert (claude_dir / "agents" / "reviewer.md").read_text() == "mine\n"
    assert (claude_dir / "agents" / "backend-implementer.md").exists()
    again = init()
    assert "unchanged" in again.stdout
    assert json.loads((claude_dir / "settings.json").read_text()) == settings
    local = init("--local", "--hook-command", "orchestrail hook")
    assert local.returncode == 0
    loc = json.loads((claude_dir / "settings.local.json").read_text())
    assert loc["hooks"]["Stop"] == [{"hooks": [
        {"type": "command", "command": "orchestrail hook", "timeout": 10}]}]
    (claude_dir / "settings.local.json").write_text("{not json")
    bad = init("--local")
    assert bad.returncode != 0 and "settings.local.json" in bad.stderr
    assert (claude_dir / "settings.local.json").read_text() == "{not json"


# --------------------------------------------------------------------------------------
def test_real_claude_session_recorded_live_by_installed_hooks(claude_bin: str,
                                                              tmp_path: Path) -> None:
    """``init --claude`` in a fresh project; a real ``claude -p`` session writes a file,
    runs an allowed command and is refused a disallowed one; the trail has all three."""
    from tests.fakes.claude_binary import hooked_project, run_print
    from tests.fakes.model_servers import AnthropicServer, Script, text, tool_use

    ws, env = hooked_project(tmp_path, ORCHESTRAIL)
    script = Script([
        tool_use("Write", {"file_path": str(ws / "hello.py"), "content": "print('hi')\n"}),
        tool_use("Bash", {"command": "echo built-ok", "description": "check"}),
        tool_use("Bash", {"command": "rm -rf ./build", "description": "clean"}),
        text("All done.")])
    with AnthropicServer(script) as api:
        result = run_print(claude_bin, ws, env, api.url, "create hello.py",
                           "Write,Bash(echo:*)")
    sid = result["session_id"]
    assert [d["tool_input"]["command"] for d in result["permission_denials"]] == [
        "rm -rf ./build"]
    assert (ws / "hello.py").read_text() == "print('hi')\n"

    evs = asyncio.run(read_all(f"sqlite:///{ws / '.orchestrail' / 'events.db'}"))
    assert {e.correlation_id for e in evs} == {sid}
    run = [e.type for e in evs if e.stream == f"run-{sid}"]
    assert run == ["run.started", "run.finished"]
    main = [e for e in evs if e.stream == f"session-{sid}"
            and not e.type.startswith("claude.hook.")]
    assert [e.type for e in main] == [
        "agent.started", "prompt.submitted",
        "tool.requested", "tool.completed",  # Write
        "tool.requested", "tool.completed",  # Bash echo
        "tool.requested", "tool.denied",     # Bash rm: refused, reconciled at Stop
        "agent.finished"]
    by_id = {e.id: e for e in evs}
    write_req, write_done = main[2], main[3]
    assert write_req.data["tool"] == "Write"
    assert write_done.data["files"][0]["path"] == str(ws / "hello.py")
    assert "built-ok" in main[5].data["output"]
    denied = main[7]
    assert denied.data["reconciled"] is True
    assert denied.data["input"]["command"] == "rm -rf ./build"
    assert denied.data["tool_use_id"] == result["permission_denials"][0]["tool_use_id"]
    for outcome in (main[3], main[5], main[7]):
        assert by_id[outcome.causation_id].data["tool_use_id"] == outcome.data["tool_use_id"]
    assert main[-1].data["final_text"] == "All done."
    assert not (ws / ".orchestrail" / "hook-spool.jsonl").exists()



def test_hook_path_imports_only_the_standard_library(tmp_path: Path) -> None:
    """The start-up budget: no pydantic, click, PyYAML (no config here), aiosqlite,
    structlog; the console script must dispatch ``hook`` before click is imported."""
    probe = (
        "import io, json, sys\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(sys.argv[1].encode()))\n"
        "from orchestrator.entry import main\n"
        "main(['hook'])\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)), file=sys.stderr)\n")
    payload = json.dumps(common("PreToolUse", tool_name="Bash", tool_use_id="t1",
                                tool_input={"command": "ls"}))
    proc = subprocess.run([sys.executable, "-c", probe, payload], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    mods = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    assert "sqlite3" in mods  # it really appended
    assert not mods & {"pydantic", "click", "yaml", "aiosqlite", "structlog", "asyncio",
                       "dataclasses", "inspect"}
    assert [e.type for e in events(tmp_path)] == ["tool.requested"]
