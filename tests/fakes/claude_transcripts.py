"""Claude Code session transcripts as Claude Code writes them, in all three layouts.

For the import's tests and its bench (``bench/claude_import.py``): real transcripts come
from the real binary (the integration tests), but a 100 MB tree of varied sessions, or the
two older layouts, cannot be produced by today's binary. The record shapes follow
``../shared/reference/claude-code-formats.md`` §4 and transcripts written by claude
2.1.197 here: one record per content block of an assistant message (each repeating the
message's usage), tool results as ``user`` records with ``toolUseResult``, ``progress``
records mirroring a running subagent into the parent file, ``system`` records, file
history snapshots, attachments, queue operations.

Layouts: ``nested`` (v2.1.2+: ``<session>/subagents/agent-<id>.jsonl`` + ``.meta.json``),
``flat`` (v2.0.28-v2.1.1: ``agent-<id>.jsonl`` beside the session file) and ``inline``
(up to v2.0.27: ``isSidechain`` records inside the session file).

``write_session`` returns a ``Manifest``: what an importer must find (tool calls with
their outcomes per stream, subagents and the calls that spawned them, usage per message).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

VERSIONS = {"nested": "2.1.197", "flat": "2.0.50", "inline": "2.0.20"}
DENIAL = ("Claude requested permissions to use Bash, but you haven't granted it yet.")


@dataclass
class Manifest:
    session_id: str
    layout: str
    files: list[Path] = field(default_factory=list)
    #: stream -> [(tool_use_id, tool, outcome)] with outcome ok | error | denied
    calls: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    #: agent id -> (spawning tool_use_id, agent type)
    agents: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: stream -> output tokens summed once per message id
    output_tokens: dict[str, int] = field(default_factory=dict)
    prompts: int = 0


class _Writer:
    def __init__(self, sid: str, layout: str, rng: random.Random, start: datetime,
                 cwd: str, manifest: Manifest) -> None:
        self.sid = sid
        self.layout = layout
        self.rng = rng
        self.now = start
        self.cwd = cwd
        self.m = manifest
        self.n = 0

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def tick(self, ms: int = 400) -> str:
        self.now += timedelta(milliseconds=self.rng.randint(ms // 4, ms))
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.now.microsecond // 1000:03d}Z"

    def env(self, parent: str | None, agent: str | None) -> dict[str, Any]:
        e: dict[str, Any] = {"parentUuid": parent, "isSidechain": agent is not None,
                             "userType": "external", "cwd": self.cwd, "sessionId": self.sid,
                             "version": VERSIONS[self.layout], "gitBranch": "main"}
        if agent is not None and self.layout != "inline":
            e["agentId"] = agent
        return e

    def text(self, n: int) -> str:
        words = ("the", "store", "event", "append", "stream", "version", "hash", "chain",
                 "session", "agent", "test", "file", "read", "write", "check", "run")
        return " ".join(self.rng.choice(words) for _ in range(n))

    def code(self, lines: int) -> str:
        return "\n".join(f"    {i:4d}  def f_{i}(x):  return x * {i}  # {self.text(6)}"
                         for i in range(lines))


def _tool(w: _Writer, deny_ok: bool) -> tuple[str, dict[str, Any], str, Any, str]:
    """(tool, input, result text, toolUseResult, outcome)."""
    r = w.rng.random()
    path = f"{w.cwd}/src/mod_{w.rng.randint(1, 40)}.py"
    if r < 0.4:
        body = w.code(w.rng.randint(20, 200))
        return "Read", {"file_path": path}, body, {"type": "text", "file": {
            "filePath": path, "content": body, "numLines": body.count("\n") + 1,
            "startLine": 1, "totalLines": body.count("\n") + 1}}, "ok"
    if r < 0.6:
        content = w.code(w.rng.randint(10, 80))
        return "Write", {"file_path": path, "content": content}, \
            f"File created successfully at: {path}", {"type": "create", "filePath": path,
                                                      "content": content}, "ok"
    if r < 0.7:
        old = w.text(8)
        return "Edit", {"file_path": path, "old_string": old, "new_string": w.text(9)}, \
            f"The file {path} has been updated.", {"filePath": path, "oldString": old}, "ok"
    if deny_ok and r < 0.74:
        return "Bash", {"command": "rm -rf build", "description": "clean"}, DENIAL, \
            "Error: " + DENIAL, "denied"
    if r < 0.8:
        out = "FAILED tests/test_x.py::test_case - assert 1 == 2\n" + w.text(40)
        return "Bash", {"command": "pytest -q", "description": "run the tests"}, \
            f"Exit code 1\n{out}", f"Error: Exit code 1\n{out}", "error"
    out = "\n".join(w.text(10) for _ in range(w.rng.randint(2, 60)))
    return "Bash", {"command": f"pytest -q -k case_{w.rng.randint(1, 99)}",
                    "description": "run the tests"}, out, {
        "stdout": out, "stderr": "", "interrupted": False, "isImage": False}, "ok"


class _Thread:
    """Writes one conversation (main or subagent) as records."""

    def __init__(self, w: _Writer, out: list[dict[str, Any]], agent: str | None,
                 stream: str, mirror: list[dict[str, Any]] | None = None,
                 mirror_tool: str | None = None) -> None:
        self.w = w
        self.out = out
        self.agent = agent
        self.stream = stream
        self.parent: str | None = None
        self.mirror = mirror
        self.mirror_tool = mirror_tool

    def rec(self, kind: str, **fields: Any) -> dict[str, Any]:
        r = {**self.w.env(self.parent, self.agent), "type": kind, "uuid": self.w.uid(),
             "timestamp": self.w.tick(), **fields}
        self.parent = r["uuid"]
        self.out.append(r)
        if self.mirror is not None and kind in ("assistant", "user"):
            self.mirror.append({**self.w.env(None, None), "type": "progress",
                                "uuid": self.w.uid(), "timestamp": r["timestamp"],
                                "data": {"type": "agent_progress", "agentId": self.agent,
                                         "message": {"type": kind, "message": r["message"]}},
                                "toolUseID": f"agent_msg_{self.w.uid()[:8]}",
                                "parentToolUseID": self.mirror_tool})
        return r

    def assistant(self, blocks: list[dict[str, Any]], stop: str) -> None:
        w = self.w
        w.n += 1
        mid = f"msg_{w.uid().replace('-', '')[:24]}"
        out_tokens = w.rng.randint(20, 900)
        usage = {"input_tokens": w.rng.randint(3, 40), "cache_creation_input_tokens":
                 w.rng.randint(0, 3000), "cache_read_input_tokens": w.rng.randint(0, 90000),
                 "output_tokens": out_tokens, "service_tier": "standard"}
        self.w.m.output_tokens[self.stream] = \
            self.w.m.output_tokens.get(self.stream, 0) + out_tokens
        for b in blocks:  # one record per content block, each repeating the usage
            self.rec("assistant", requestId=f"req_{mid[4:]}", message={
                "id": mid, "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5", "content": [b], "stop_reason": stop,
                "stop_sequence": None, "usage": usage})

    def prompt(self, text: str) -> None:
        self.rec("user", message={"role": "user", "content": text},
                 promptId=self.w.uid(), permissionMode="default")

    def work(self, steps: int, spawn: Any = None, deny_ok: bool = True) -> None:
        w = self.w
        for _ in range(steps):
            if spawn is not None and w.rng.random() < 0.25:
                spawn(self)
                continue
            tool, inp, text, tur, outcome = _tool(w, deny_ok)
            tuid = f"toolu_{w.uid().replace('-', '')[:24]}"
            blocks: list[dict[str, Any]] = []
            if w.rng.random() < 0.5:
                blocks.append({"type": "thinking", "thinking": w.text(w.rng.randint(20, 200)),
                               "signature": "sig" + w.uid().replace("-", "") * 4})
            if w.rng.random() < 0.6:
                blocks.append({"type": "text", "text": w.text(w.rng.randint(5, 60))})
            blocks.append({"type": "tool_use", "id": tuid, "name": tool, "input": inp})
            self.assistant(blocks, "tool_use")
            if tool == "Bash" and outcome == "ok" and w.rng.random() < 0.5:
                self.out.append({**w.env(None, self.agent), "type": "progress",
                                 "uuid": w.uid(), "timestamp": w.tick(50),
                                 "data": {"type": "bash_progress", "output": text[:200]},
                                 "toolUseID": tuid, "parentToolUseID": tuid})
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tuid,
                                     "content": text}
            if outcome != "ok":
                block["is_error"] = True
            self.rec("user", message={"role": "user", "content": [block]},
                     toolUseResult=tur, sourceToolAssistantUUID=self.parent)
            self.w.m.calls.setdefault(self.stream, []).append((tuid, tool, outcome))
        self.assistant([{"type": "text", "text": w.text(w.rng.randint(10, 120))}], "end_turn")


def write_session(folder: Path, layout: str, seed: int, *, prompts: int = 2,
                  steps: int = 6, subagents: bool = True) -> Manifest:
    """One session (and its subagents) under ``folder`` (a project directory)."""
    rng = random.Random(seed)
    sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    m = Manifest(sid, layout)
    w = _Writer(sid, layout, rng, datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
                + timedelta(minutes=seed), f"/home/dev/proj{seed % 7}", m)
    main: list[dict[str, Any]] = [{"type": "summary", "summary": w.text(6),
                                   "leafUuid": w.uid()}]
    sub_files: dict[str, list[dict[str, Any]]] = {}
    thread = _Thread(w, main, None, f"session-{sid}")

    def spawn(parent: _Thread) -> None:
        agent = rng.getrandbits(64).to_bytes(8, "big").hex()[:17]
        kind = rng.choice(["backend-implementer", "reviewer", "general-purpose"])
        tuid = f"toolu_{w.uid().replace('-', '')[:24]}"
        prompt = f"Task {agent}: " + w.text(rng.randint(20, 120))
        parent.assistant([{"type": "tool_use", "id": tuid, "name": "Task" if layout !=
                           "nested" else "Agent", "input": {
                               "subagent_type": kind, "description": w.text(3),
                               "prompt": prompt}}], "tool_use")
        m.calls.setdefault(parent.stream, []).append((tuid, "Agent" if layout == "nested"
                                                      else "Task", "ok"))
        m.agents[agent] = (tuid, kind)
        records = main if layout == "inline" else sub_files.setdefault(agent, [])
        child = _Thread(w, records, agent, f"session-{agent}",
                        mirror=main if layout == "nested" else None, mirror_tool=tuid)
        child.prompt(prompt)
        child.work(rng.randint(2, steps), deny_ok=True)
        final = child.out[-1]["message"]["content"][0]["text"]
        tur: dict[str, Any] = {"status": "completed", "prompt": prompt,
                               "content": [{"type": "text", "text": final}],
                               "totalDurationMs": rng.randint(1000, 90000),
                               "totalTokens": rng.randint(1000, 90000),
                               "totalToolUseCount": 3}
        if layout != "inline":
            tur["agentId"] = agent
        parent.rec("user", message={"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tuid, "content": [
                {"type": "text", "text": final}]}]}, toolUseResult=tur)

    for p in range(prompts):
        main.append({"type": "queue-operation", "operation": "enqueue",
                     "timestamp": w.tick(), "sessionId": sid, "content": "go"})
        thread.prompt(w.text(rng.randint(5, 80)))
        m.prompts += 1
        thread.rec("attachment", attachment={"type": "skill_listing",
                                             "content": w.text(200), "skillCount": 13})
        thread.work(steps, spawn if subagents else None)
        main.append({"type": "file-history-snapshot", "messageId": w.uid(), "snapshot": {
            "messageId": w.uid(), "trackedFileBackups": {}, "timestamp": w.tick()},
            "isSnapshotUpdate": False})
        thread.rec("system", subtype="turn_duration", durationMs=rng.randint(1000, 60000),
                   isMeta=False)
        if p == 0 and prompts > 1:
            thread.rec("system", subtype="compact_boundary", content="Conversation compacted",
                       compactMetadata={"trigger": "auto", "preTokens": 155000},
                       logicalParentUuid=thread.parent, level="info")
            thread.rec("user", isCompactSummary=True, message={
                "role": "user", "content": "This session is being continued. " + w.text(80)})

    project = folder
    project.mkdir(parents=True, exist_ok=True)
    main_path = project / f"{sid}.jsonl"
    _dump(main_path, main)
    m.files.append(main_path)
    for agent, records in sub_files.items():
        if layout == "nested":
            d = project / sid / "subagents"
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"agent-{agent}.jsonl"
            tuid, kind = m.agents[agent]
            (d / f"agent-{agent}.meta.json").write_text(json.dumps(
                {"agentType": kind, "description": "work", "toolUseId": tuid,
                 "spawnDepth": 1}))
        else:
            path = project / f"agent-{agent}.jsonl"
        _dump(path, records)
        m.files.append(path)
    return m


def _dump(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
