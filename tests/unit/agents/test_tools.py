"""The native tools, run directly against real files and real subprocesses."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from agents.tools import (
    TOOLS,
    Agent,
    Bash,
    DelegateRequest,
    Edit,
    Glob,
    Grep,
    MultiEdit,
    Read,
    TodoWrite,
    ToolContext,
    ToolError,
    Write,
    get_tool,
    minimal_env,
)
from agents.tools.schema import check_schema, validate
from tests.unit.agents._runtime import killed


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ToolContext(workspace=ws, session_id="s1")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- schemas -------------------------------------------------------------------------------

def test_every_tool_schema_uses_claude_code_input_names() -> None:
    props = {name: set(cls.input_schema["properties"]) for name, cls in TOOLS.items()}
    assert {"file_path", "offset", "limit"} <= props["Read"]
    assert {"file_path", "content"} == props["Write"]
    assert {"file_path", "old_string", "new_string", "replace_all"} == props["Edit"]
    assert {"file_path", "edits"} == props["MultiEdit"]
    assert {"pattern", "path"} == props["Glob"]
    assert {"pattern", "path", "glob", "output_mode", "-i", "-n"} <= props["Grep"]
    assert {"command", "timeout", "description"} <= props["Bash"]
    assert {"todos"} == props["TodoWrite"]
    assert {"subagent_type", "prompt", "description"} <= props["Agent"]
    assert get_tool("Task").name == "Agent"  # type: ignore[union-attr]
    assert get_tool("Nope") is None


def test_validator_reports_each_problem() -> None:
    errs = validate({"file_path": 3, "bogus": 1}, Read.input_schema)
    assert any("expected string" in e for e in errs)
    assert any("unexpected property 'bogus'" in e for e in errs)
    assert validate({}, Write.input_schema) == [
        "input: missing required property 'file_path'",
        "input: missing required property 'content'"]
    assert validate({"command": "x", "timeout": 700000}, Bash.input_schema)
    assert validate({"command": "x", "timeout": True}, Bash.input_schema)  # bool is no number
    assert validate({"todos": [{"content": "a", "status": "done"}]}, TodoWrite.input_schema)
    assert validate({"command": "ls"}, Bash.input_schema) == []
    with pytest.raises(ValueError, match="unsupported keywords"):
        check_schema({"type": "string", "pattern": "x"})


# -- Read / Write / Edit / MultiEdit -------------------------------------------------------

async def test_read_numbers_lines_and_pages(ctx: ToolContext) -> None:
    (ctx.workspace / "a.txt").write_text("one\ntwo\nthree\n")
    r = await Read().run({"file_path": "a.txt"}, ctx)
    assert r.output == "     1\tone\n     2\ttwo\n     3\tthree"
    r = await Read().run({"file_path": str(ctx.workspace / "a.txt"), "offset": 2, "limit": 1},
                         ctx)
    assert r.output == "     2\ttwo"
    with pytest.raises(ToolError, match="past the end"):
        await Read().run({"file_path": "a.txt", "offset": 9}, ctx)
    with pytest.raises(ToolError, match="does not exist"):
        await Read().run({"file_path": "missing.txt"}, ctx)
    with pytest.raises(ToolError, match="directory"):
        await Read().run({"file_path": "."}, ctx)


async def test_write_records_hash_and_creates_parents(ctx: ToolContext) -> None:
    r = await Write().run({"file_path": "src/app.py", "content": "x = 1\n"}, ctx)
    assert (ctx.workspace / "src/app.py").read_text() == "x = 1\n"
    assert [f.to_dict() for f in r.files] == [
        {"path": "src/app.py", "sha256": sha(b"x = 1\n"), "bytes": 6, "action": "created"}]
    r = await Write().run({"file_path": "src/app.py", "content": "x = 2\n"}, ctx)
    assert r.files[0].action == "modified" and r.files[0].sha256 == sha(b"x = 2\n")
    assert not [p for p in (ctx.workspace / "src").iterdir() if p.name.startswith(".orch")]


async def test_write_keeps_file_mode(ctx: ToolContext) -> None:
    p = ctx.workspace / "run.sh"
    p.write_text("#!/bin/sh\n")
    p.chmod(0o755)
    await Write().run({"file_path": "run.sh", "content": "#!/bin/sh\necho hi\n"}, ctx)
    assert p.stat().st_mode & 0o777 == 0o755


async def test_edit_semantics(ctx: ToolContext) -> None:
    p = ctx.workspace / "m.py"
    p.write_text("a = 1\nb = 1\n")
    with pytest.raises(ToolError, match="occurs 2 times"):
        await Edit().run({"file_path": "m.py", "old_string": "1", "new_string": "2"}, ctx)
    with pytest.raises(ToolError, match="not found"):
        await Edit().run({"file_path": "m.py", "old_string": "zzz", "new_string": "2"}, ctx)
    with pytest.raises(ToolError, match="identical"):
        await Edit().run({"file_path": "m.py", "old_string": "a", "new_string": "a"}, ctx)
    r = await Edit().run({"file_path": "m.py", "old_string": "a = 1", "new_string": "a = 3"},
                         ctx)
    assert p.read_text() == "a = 3\nb = 1\n"
    assert r.files[0].sha256 == sha(p.read_bytes())
    await Edit().run({"file_path": "m.py", "old_string": "= ", "new_string": ":= ",
                      "replace_all": True}, ctx)
    assert p.read_text() == "a := 3\nb := 1\n"


async def test_multiedit_is_all_or_nothing(ctx: ToolContext) -> None:
    p = ctx.workspace / "m.py"
    p.write_text("alpha beta gamma\n")
    with pytest.raises(ToolError, match="edit 2"):
        await MultiEdit().run({"file_path": "m.py", "edits": [
            {"old_string": "alpha", "new_string": "A"},
            {"old_string": "missing", "new_string": "B"}]}, ctx)
    assert p.read_text() == "alpha beta gamma\n"
    r = await MultiEdit().run({"file_path": "m.py", "edits": [
        {"old_string": "alpha", "new_string": "A"},
        {"old_string": "A beta", "new_string": "AB"}]}, ctx)
    assert p.read_text() == "AB gamma\n" and r.files[0].action == "modified"


@pytest.mark.parametrize("path", ["../x.txt", "/etc/passwd", "a/../../x.txt", "~/../x"])
async def test_file_tools_refuse_paths_outside(ctx: ToolContext, path: str) -> None:
    with pytest.raises(ToolError, match="outside the workspace"):
        await Write().run({"file_path": path, "content": "pwned"}, ctx)
    assert not (ctx.workspace.parent / "x.txt").exists()


async def test_symlink_escape_is_refused(ctx: ToolContext, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s3cret")
    (ctx.workspace / "link").symlink_to(outside)
    (ctx.workspace / "dangling").symlink_to(outside / "new-file")
    with pytest.raises(ToolError, match="outside"):
        await Read().run({"file_path": "link/secret"}, ctx)
    with pytest.raises(ToolError, match="outside"):
        await Write().run({"file_path": "dangling", "content": "x"}, ctx)
    assert not (outside / "new-file").exists()


# -- Glob / Grep -----------------------------------------------------------------------------

async def test_glob_and_grep(ctx: ToolContext, tmp_path: Path) -> None:
    ws = ctx.workspace
    (ws / "src").mkdir()
    (ws / "src/a.py").write_text("def health():\n    return 'ok'\n")
    (ws / "src/b.ts").write_text("const HEALTH = 1\n")
    (ws / ".git").mkdir()
    (ws / ".git/config").write_text("health\n")
    old = time.time() - 100
    os.utime(ws / "src/b.ts", (old, old))
    r = await Glob().run({"pattern": "**/*.{py,ts}"}, ctx)
    assert r.output.splitlines() == ["src/a.py", "src/b.ts"]  # newest first
    r = await Glob().run({"pattern": "*.py", "path": "src"}, ctx)
    assert r.output == "src/a.py"
    assert (await Glob().run({"pattern": "*.rs"}, ctx)).output == "No files found"
    with pytest.raises(ToolError):
        await Glob().run({"pattern": "../*"}, ctx)
    r = await Grep().run({"pattern": "health", "-i": True}, ctx)
    assert sorted(r.output.splitlines()) == ["src/a.py", "src/b.ts"]  # .git skipped
    r = await Grep().run({"pattern": "return", "output_mode": "content"}, ctx)
    assert r.output == "src/a.py:2:    return 'ok'"
    r = await Grep().run({"pattern": "e", "output_mode": "count", "glob": "*.py"}, ctx)
    assert r.output.startswith("src/a.py:")
    with pytest.raises(ToolError, match="invalid regular expression"):
        await Grep().run({"pattern": "("}, ctx)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.txt").write_text("health secret\n")
    (ws / "out").symlink_to(outside)
    (ws / "leak-link").symlink_to(outside / "leak.txt")
    r = await Grep().run({"pattern": "secret"}, ctx)
    assert r.output == "No matches found"
    assert "leak" not in (await Glob().run({"pattern": "**/*"}, ctx)).output


# -- Bash ------------------------------------------------------------------------------------

async def test_bash_runs_in_workspace_with_exit_code(ctx: ToolContext) -> None:
    r = await Bash().run({"command": "pwd; echo err >&2; exit 3"}, ctx)
    assert r.exit_code == 3 and r.is_error
    assert str(ctx.workspace) in r.output and "err" in r.output and "[exit code 3]" in r.output
    r = await Bash().run({"command": "true"}, ctx)
    assert r.exit_code == 0 and not r.is_error and r.output == "(no output)"


async def test_bash_env_is_minimal(ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    r = await Bash().run({"command": "env"}, ctx)
    assert "sk-ant-secret" not in r.output and "OPENAI_API_KEY" not in r.output
    assert f"HOME={ctx.workspace}" in r.output and "ORCHESTRAIL_SESSION_ID=s1" in r.output
    env = minimal_env("/w", "s", {"EXTRA": "1"})
    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TMPDIR", "HOME", "PWD", "TERM",
                        "ORCHESTRAIL_SESSION_ID", "EXTRA"}


async def test_bash_timeout_kills_the_whole_group(ctx: ToolContext) -> None:
    marker = "876543.25"
    t0 = time.monotonic()
    r = await Bash().run({"command": f"sleep {marker} & sleep {marker}", "timeout": 300}, ctx)
    assert time.monotonic() - t0 < 5
    assert r.timed_out and r.is_error and "timed out" in r.output
    assert await killed(marker)


async def test_bash_background_leftovers_are_killed(ctx: ToolContext) -> None:
    marker = "765432.5"
    t0 = time.monotonic()
    r = await Bash().run({"command": f"nohup sleep {marker} >/dev/null 2>&1 & echo started"},
                         ctx)
    assert r.exit_code == 0 and "started" in r.output and time.monotonic() - t0 < 5
    assert await killed(marker)


async def test_bash_output_is_capped(ctx: ToolContext) -> None:
    ctx.output_cap = 1000
    r = await Bash().run({"command": "seq 1 200000"}, ctx)
    assert r.truncated and "[output truncated" in r.output
    assert len(r.output) < 1200 and r.exit_code == 0


async def test_bash_endless_output_with_timeout(ctx: ToolContext) -> None:
    ctx.output_cap = 500
    r = await Bash().run({"command": "yes", "timeout": 500}, ctx)
    assert r.timed_out and r.truncated and len(r.output) < 800


async def test_bash_timeout_clamped_by_context(ctx: ToolContext) -> None:
    ctx.bash_max_timeout = 0.3
    t0 = time.monotonic()
    r = await Bash().run({"command": "sleep 30", "timeout": 600000}, ctx)
    assert r.timed_out and time.monotonic() - t0 < 5




# -- TodoWrite / Agent -----------------------------------------------------------------------

async def test_todowrite(ctx: ToolContext) -> None:
    todos = [{"content": "a", "status": "completed"}, {"content": "b", "status": "in_progress"}]
    r = await TodoWrite().run({"todos": todos}, ctx)
    assert ctx.todos == todos and "2 items" in r.output
    with pytest.raises(ToolError, match="in_progress"):
        await TodoWrite().run({"todos": [{"content": "x", "status": "in_progress"}] * 2}, ctx)


async def test_agent_delegates_with_depth_limit(ctx: ToolContext) -> None:
    seen: list[DelegateRequest] = []

    async def delegate(req: DelegateRequest) -> str:
        seen.append(req)
        return f"child did: {req.prompt}"

    data = {"subagent_type": "helper", "prompt": "count", "description": "count things"}
    with pytest.raises(ToolError, match="not available"):
        await Agent().run(data, ctx)
    ctx.delegate = delegate
    r = await Agent().run(data, ctx)
    assert r.output == "child did: count" and seen[0].depth == 1
    assert seen[0].parent_session == "s1"
    ctx.depth = 2
    with pytest.raises(ToolError, match="depth limit"):
        await Agent().run(data, ctx)
