"""``import claude-code``: every transcript layout, idempotence, growth, bad input.

Transcripts come from ``tests/fakes/claude_transcripts.py`` (the layouts today's binary no
longer writes) and by hand; the store is a real SQLite file; bad input goes through the
real console script. The real binary's transcript is checked against the live hook in
``tests/integration/test_claude_import_agreement.py``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eventstore.model import Query, RecordedEvent
from eventstore.urls import open_store
from orchestrator.fold import fold
from orchestrator.importers.claude_code import BadLine, Summary, discover, import_sessions
from tests.fakes.claude_transcripts import Manifest, write_session

ORCHESTRAIL = str(Path(sys.executable).parent / "orchestrail")


async def _import(db: Path, *paths: Path) -> Summary:
    store = await open_store(f"sqlite:///{db}")
    try:
        sessions, _ = discover(paths)
        return await import_sessions(store, sessions)
    finally:
        await store.close()


async def _events(db: Path) -> list[RecordedEvent]:
    store = await open_store(f"sqlite:///{db}", create=False)
    try:
        assert (await store.verify()).ok
        return [e async for e in store.read(Query())]
    finally:
        await store.close()


@pytest.mark.parametrize("layout", ["nested", "flat", "inline"])
async def test_every_layout_maps_calls_subagents_and_usage(tmp_path: Path, layout: str) -> None:
    m: Manifest = write_session(tmp_path / "proj", layout, 2)
    assert len(m.agents) >= 2  # the seed gives subagents, a denial and a failed command
    db = tmp_path / "events.db"
    summary = await _import(db, tmp_path / "proj")
    assert summary.sessions == 1 and not summary.bad_lines
    assert summary.files == len(m.files)
    evs = await _events(db)
    assert {e.correlation_id for e in evs} == {m.session_id}
    state = fold(evs, m.session_id).to_dict(max_chars=None)
    assert state["run"]["status"] == "completed"
    sessions = {s["id"]: s for s in state["sessions"]}
    main = sessions.pop(m.session_id)
    assert main["agent"] == "claude-code"

    folded = fold(evs, m.session_id)

    def calls(s: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(c.tool_use_id, c.tool, c.status)
                for c in folded.sessions[s["id"]].tool_calls.values()]

    assert calls(main) == m.calls[f"session-{m.session_id}"]
    # each subagent: its own stream, linked to the call that spawned it, same calls
    assert len(sessions) == len(m.agents)
    by_spawn = {spawn: (agent, kind) for agent, (spawn, kind) in m.agents.items()}
    started = {e.stream: e for e in evs if e.type == "agent.started"}
    for sid, s in sessions.items():
        ev = started[f"session-{sid}"]
        spawn = ev.data["spawned_by_tool_use_id"]
        agent, kind = by_spawn[spawn]
        assert s["parent_session"] == m.session_id and s["agent"] == kind
        assert ev.actor == f"agent:{kind}"
        assert next(e for e in evs if e.id == ev.causation_id).data["tool_use_id"] == spawn
        if layout != "inline":  # inline sidechains have no agent id: the root uuid is used
            assert sid == agent
        assert calls(s) == m.calls[f"session-{agent}"]
        assert ev.data["prompt"].startswith(f"Task {agent}: ")
    # usage counted once per message id although every block's record repeats it
    for s in state["sessions"]:
        key = s["id"] if s["id"] == m.session_id else by_spawn[
            started[f"session-{s['id']}"].data["spawned_by_tool_use_id"]][0]
        out = sum(t["usage"].get("output_tokens", 0) for t in s["turns"])
        assert out == m.output_tokens[f"session-{key}"]
        # agent.finished carries the thread's usage so far (what `runs` sums)
        assert s["usage"]["output_tokens"] == out
    prompts = [e for e in evs if e.type == "prompt.submitted"]
    assert len(prompts) == m.prompts
    types = {e.type for e in evs}
    assert {"claude.transcript.compact_boundary", "claude.transcript.compact_summary",
            "claude.transcript.file-history-snapshot",
            "claude.transcript.system.turn_duration", "run.started", "run.finished"} <= types
    denied = [e for e in evs if e.type == "tool.denied"]
    assert denied and all("haven't granted" in e.data["reason"] for e in denied)
    assert all(e.data["input"] == {"command": "rm -rf build", "description": "clean"}
               for e in denied)


async def test_importing_twice_adds_nothing_and_growth_adds_only_the_new_part(
        tmp_path: Path) -> None:
    m = write_session(tmp_path / "full", "nested", 6)
    db = tmp_path / "grown.db"
    # a copy of the tree whose main transcript stops half-way, mid-line
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "full", part)
    main = part / f"{m.session_id}.jsonl"
    blob = main.read_bytes()
    cut = blob.index(b"\n", len(blob) // 2) + 40
    main.write_bytes(blob[:cut])
    first = await _import(db, part)
    assert first.appended > 0 and len(first.bad_lines) == 1
    assert "partially written last line" in first.bad_lines[0].reason
    main.write_bytes(blob)  # the session went on
    second = await _import(db, part)
    third = await _import(db, part)
    assert third.appended == 0 and third.duplicates == third.events
    fresh = tmp_path / "fresh.db"
    once = await _import(fresh, tmp_path / "full")
    assert first.appended + second.appended == once.appended
    grown, direct = await _events(db), await _events(fresh)
    assert sorted(e.id for e in grown) == sorted(e.id for e in direct)
    assert [(e.stream, e.version, e.type) for e in sorted(grown, key=lambda e: e.id)] == \
        [(e.stream, e.version, e.type) for e in sorted(direct, key=lambda e: e.id)]


async def test_unknown_records_are_kept_and_odd_ones_do_not_fail(tmp_path: Path) -> None:
    sid = "11111111-2222-4333-8444-555555555555"
    recs = [
        {"type": "user", "uuid": "u1", "sessionId": sid, "timestamp": "2026-01-01T00:00:00Z",
         "cwd": "/p", "message": {"role": "user", "content": "hello"}},
        {"type": "hologram", "uuid": "h1", "sessionId": sid, "payload": {"x": [1, 2]}},
        {"type": "assistant", "uuid": "a1", "sessionId": sid,
         "timestamp": "2026-01-01T00:00:01Z", "isApiErrorMessage": True,
         "message": {"id": "m0", "model": "<synthetic>", "content": [
             {"type": "text", "text": "API Error: 529 overloaded"}]}},
        {"type": "assistant", "uuid": "a2", "sessionId": sid, "timestamp": "bogus",
         "message": {"id": "m1", "model": "claude-x", "stop_reason": None,
                     "content": [{"type": "text", "text": "hi"}],
                     "usage": {"output_tokens": 5}}},
        {"type": "assistant", "uuid": "a3", "sessionId": sid, "message": {
            "id": "m2", "model": "<synthetic>",
            "content": [{"type": "text", "text": "No response requested."}]}},
        {"type": "user", "uuid": "u2", "sessionId": sid, "message": {
            "role": "user", "content": [{"type": "tool_result", "tool_use_id": "t_unknown",
                                         "content": "orphan"}]}},
        {"type": "user", "uuid": "u1", "sessionId": sid,
         "message": {"role": "user", "content": "hello"}},  # the same uuid again
    ]
    path = tmp_path / f"{sid}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    db = tmp_path / "e.db"
    summary = await _import(db, path)
    assert not summary.bad_lines and summary.duplicate_records == 1
    evs = await _events(db)
    by_type = {e.type: e for e in evs}
    assert by_type["claude.transcript.hologram"].data["payload"] == {"x": [1, 2]}
    assert by_type["model.failed"].data["error"] == "API Error: 529 overloaded"
    assert by_type["model.responded"].data["usage"] == {"output_tokens": 5}
    assert by_type["tool.completed"].data["tool"] is None  # no tool_use for it: kept anyway
    assert by_type["prompt.submitted"].data["prompt"] == "hello"
    assert by_type["agent.finished"].data["final_text"] == "hi"
    synthetic = by_type["claude.transcript.assistant"].data["message"]
    assert synthetic["content"][0]["text"] == "No response requested."
    assert sum(e.type == "model.responded" for e in evs) == 1


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_imported(
        tmp_path: Path) -> None:
    m = write_session(tmp_path / "proj", "flat", 5)
    main = tmp_path / "proj" / f"{m.session_id}.jsonl"
    lines = main.read_bytes().split(b"\n")
    lines[3] = b'{"type": "assistant", "uuid": "x", "mess'  # corrupted in the middle
    lines.insert(5, b"\xff\xfe not utf-8 \x80")
    main.write_bytes(b"\n".join(lines) + b'{"type":"user","uu')  # torn last line
    (tmp_path / "proj" / "image.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR")
    (tmp_path / "proj" / "history.jsonl").write_text(
        '{"display": "ls", "timestamp": 1}\n[1, 2]\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    db = tmp_path / "e.db"
    proc = subprocess.run([ORCHESTRAIL, "--store", f"sqlite:///{db}", "import", "claude-code",
                           str(tmp_path / "proj"), "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    reported = proc.stderr.strip().splitlines()
    assert f"{main}:4: not valid JSON" in "\n".join(reported)
    assert any(line.startswith(f"{main}:6: not valid JSON") for line in reported)
    assert any(line.startswith(f"{main}:{len(lines)}: partially written last line")
               for line in reported)
    assert f"{tmp_path / 'proj' / 'image.jsonl'}:1: binary file" in proc.stderr
    hist = tmp_path / "proj" / "history.jsonl"
    assert f"{hist}:1: not a transcript record" in proc.stderr
    assert f"{hist}:2: not a transcript record" in proc.stderr
    assert summary["bad_line_count"] == len(reported) == 6
    assert summary["sessions"] == 1 and summary["appended"] > 50
    evs = [e for e in asyncio.run(_events(db))
           if e.correlation_id == m.session_id]
    assert len(evs) == summary["appended"]
    # a clean import exits 0 and says what it did
    again = subprocess.run([ORCHESTRAIL, "--store", f"sqlite:///{db}", "import",
                            "claude-code", str(tmp_path / "proj" / f"agent-"
                                               f"{next(iter(m.agents))}.jsonl")],
                           capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "0 event(s) appended" in again.stdout and "already stored" in again.stdout
    missing = subprocess.run([ORCHESTRAIL, "--store", f"sqlite:///{db}", "import",
                              "claude-code", str(tmp_path / "nope")],
                             capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 1 and "nope: no such file or directory" in missing.stderr


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty

    for i, layout in enumerate(("nested", "flat", "inline")):
        write_session(tmp_path / "projects" / f"p{i}", layout, i + 2)
    args = [ORCHESTRAIL, "--store", f"sqlite:///{tmp_path / 'e.db'}", "import",
            "claude-code", str(tmp_path / "projects")]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=follower, env=env,
                              timeout=120)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    files = sum(1 for _ in (tmp_path / "projects").rglob("*.jsonl"))
    assert b"importing [" in shown and f"{files}/{files} files".encode() in shown
    assert b" MB" in shown
    plain = subprocess.run([*args[:2], f"sqlite:///{tmp_path / 'f.db'}", *args[3:]],
                           capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 0 and "importing [" not in plain.stderr
    assert plain.stderr == ""


async def test_a_second_copy_of_a_session_is_reported_not_merged(tmp_path: Path) -> None:
    m = write_session(tmp_path / "a", "nested", 2)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    bad: list[BadLine] = []
    sessions, _ = discover([tmp_path / "a", tmp_path / "b"], bad)
    assert len(sessions) == 1 and sessions[0].main == tmp_path / "a" / f"{m.session_id}.jsonl"
    assert [(b.path, b.line) for b in bad] == [
        (str(tmp_path / "b" / f"{m.session_id}.jsonl"), 1)]
    assert "another transcript of session" in bad[0].reason
    store = await open_store(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        summary = await import_sessions(store, sessions, bad_lines=bad)
    finally:
        await store.close()
    assert summary.bad_lines == bad and summary.appended > 0


async def test_a_session_an_orchestrail_run_recorded_is_not_imported_again(
        tmp_path: Path) -> None:
    """The claude-code runner passes its session id to claude (``--session-id``), so the
    transcript of a session orchestrail ran names a stream that run already holds."""
    from eventstore.model import NewEvent

    m = write_session(tmp_path / "p", "flat", 5)
    other = write_session(tmp_path / "p", "nested", 6)
    db = tmp_path / "e.db"
    store = await open_store(f"sqlite:///{db}")
    try:
        await store.append(f"session-{m.session_id}", [NewEvent(
            type="agent.started", data={"agent": "lead"}, correlation_id="run-42")])
        sessions, _ = discover([tmp_path / "p"])
        summary = await import_sessions(store, sessions)
    finally:
        await store.close()
    assert summary.recorded_by_runs == [{"session": m.session_id, "runs": ["run-42"]}]
    assert summary.sessions == 1
    evs = await _events(db)
    assert {e.correlation_id for e in evs} == {"run-42", other.session_id}


def test_derived_ids_are_uuid5_of_the_joined_parts() -> None:
    """The hook and the import share ids (``derived_id``); its fast path must stay
    byte-for-byte ``uuid.uuid5`` or a later import would duplicate what the hook wrote."""
    import random
    import string
    import uuid

    from orchestrator.hook.mapping import NAMESPACE, derived_id

    rng = random.Random(5)
    alphabet = string.printable + "éß漢🙂"
    for _ in range(20_000):
        parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
                 for _ in range(rng.randint(1, 4))]
        assert derived_id(*parts) == str(uuid.uuid5(NAMESPACE, "|".join(parts)))


async def test_inline_sidechain_with_agent_id_on_some_records(tmp_path: Path) -> None:
    """v2.0.4x wrote ``agentId`` on only some sidechain records, and on the parent's
    tool_result record itself (not in ``toolUseResult``)."""
    sid = "88a8d761-0000-4000-8000-000000000001"
    env = {"sessionId": sid, "cwd": "/w", "version": "2.0.46", "userType": "external"}

    def rec(uuid_: str, parent: str | None, side: bool, kind: str, content: Any,
            t: int, **extra: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": kind, "content": content}
        if kind == "assistant":
            msg.update(id=f"msg_{uuid_}", model="claude-sonnet-4-5", stop_reason="tool_use",
                       usage={"output_tokens": 7})
        return {**env, "uuid": uuid_, "parentUuid": parent, "isSidechain": side,
                "type": kind, "timestamp": f"2025-11-19T22:5{t}:00.000Z", "message": msg,
                **extra}

    lines = [
        rec("m1", None, False, "assistant", [{"type": "tool_use", "id": "toolu_T1",
             "name": "Task", "input": {"subagent_type": "general-purpose",
                                       "description": "research", "prompt": "Research X"}}], 0),
        rec("s1", None, True, "assistant", [{"type": "text", "text": "I'll look."}], 1),
        rec("s2", "s1", True, "assistant", [{"type": "tool_use", "id": "toolu_G1",
             "name": "Grep", "input": {"pattern": "x"}}], 2),
        rec("s3", "s2", True, "user", [{"type": "tool_result", "tool_use_id": "toolu_G1",
                                        "content": "a.py"}], 3, agentId="e1c84ba5"),
        rec("m2", "m1", False, "user", [{"type": "tool_result", "tool_use_id": "toolu_T1",
                                         "content": [{"type": "text", "text": "done"}]}], 4,
            agentId="e1c84ba5", toolUseResult={"oldString": None}),
    ]
    path = tmp_path / f"{sid}.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    db = tmp_path / "e.db"
    summary = await _import(db, path)
    assert not summary.bad_lines
    evs = await _events(db)
    started = [e for e in evs if e.type == "agent.started" and e.stream != f"session-{sid}"]
    assert [e.stream for e in started] == ["session-e1c84ba5"]
    assert started[0].data["spawned_by_tool_use_id"] == "toolu_T1"
    assert started[0].data["agent"] == "general-purpose"
    state = fold(evs, sid)
    child = state.sessions["e1c84ba5"]
    assert child.parent_session == sid
    assert [(c.tool, c.status) for c in child.tool_calls.values()] == [("Grep", "ok")]
    assert [(c.tool, c.status) for c in state.sessions[sid].tool_calls.values()] == [
        ("Task", "ok")]


def test_workflow_agents_belong_to_their_session_and_journals_are_ignored(
        tmp_path: Path) -> None:
    # a folder named "subagents" above the projects tree is not the layout
    proj = tmp_path / "subagents" / "projects" / "-w"
    m = write_session(proj, "nested", 2)
    wf = proj / m.session_id / "subagents" / "workflows" / "wf_1"
    wf.mkdir(parents=True)
    (wf / "agent-wf01.jsonl").write_text(json.dumps({
        "type": "user", "uuid": "w1", "sessionId": m.session_id, "agentId": "wf01",
        "isSidechain": True, "message": {"role": "user", "content": "step"}}) + "\n")
    (wf / "journal.jsonl").write_text('{"step": 1}\n')
    sessions, ignored = discover([tmp_path / "subagents" / "projects"])
    assert [s.session_id for s in sessions] == [m.session_id]
    assert wf / "agent-wf01.jsonl" in sessions[0].agents
    assert sessions[0].main == proj / f"{m.session_id}.jsonl"
    assert ignored == [str(wf / "journal.jsonl")]
