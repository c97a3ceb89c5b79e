"""Definitions: the seeds, every field, the errors, discovery and precedence."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agents.definition import AgentDefinition, load_definition, parse_definition
from agents.discovery import load_agents, validate_paths
from agents.errors import AgentNotFound, DefinitionError
from agents.rules import split_tool_list

SEEDS = Path(__file__).resolve().parents[3].parent / "shared" / "seeds"
REPO = Path(__file__).resolve().parents[3]


def seed(name: str) -> Path:
    path = SEEDS / name
    assert path.is_file(), f"seed missing: {path}"
    return path


# -- the three seeds --------------------------------------------------------------------

def test_seed_eventsource_py_comma_string_with_rules() -> None:
    d = load_definition(seed("backend-implementer.eventsource-py.md"))
    assert d.name == "backend-implementer"
    assert d.model == "sonnet"
    assert d.permission_mode == "default"
    assert d.tools == ("Read", "Write", "Edit", "Glob", "Grep", "Bash(bd:*)",
                       "Bash(uv run pytest:*)", "Bash(uv run ruff check:*)", "Bash(uv run mypy:*)")
    assert d.tool_names == ("Read", "Write", "Edit", "Glob", "Grep", "Bash")
    assert d.prompt.startswith("# Backend Implementer\n\nImplement new backend adapters")
    assert d.problems == ()


def test_seed_phase2_json_list() -> None:
    d = load_definition(seed("backend-implementer.phase2.md"))
    assert d.model == "opus"
    assert d.tools == ("Read", "Write", "Edit", "Bash", "Grep", "Glob")
    assert d.permission_mode is None  # inherit
    assert d.prompt.startswith("# Backend Implementer\n\nYou are an expert backend")
    assert d.description.startswith("Backend implementation specialist. Implements API")


def test_seed_trd_block_description_color_skills() -> None:
    d = load_definition(seed("backend-implementer.trd.md"))
    assert d.model == "inherit"  # no model key
    assert d.color == "yellow"
    assert d.tools == ("Write", "Read", "Edit", "MultiEdit", "Bash", "Grep", "Glob", "WebFetch",
                       "WebSearch", "Task", "Skill", "TodoWrite", "NotebookEdit")
    assert "Agent" in (d.tool_names or ()) and "Task" not in (d.tool_names or ())
    assert d.skills == ("pytest", "jest", "developing-with-python",
                        "developing-with-typescript", "nestjs", "using-prisma", "using-celery")
    assert d.description.startswith("Backend implementation specialist for APIs")
    assert '- "Implement a REST API endpoint' in d.description
    assert d.prompt.startswith("## Role Statement")


@pytest.mark.parametrize("name", ["story-4.2-event-store-backend-selection.md",
                                  "CLAUDE.orchestrator.md"])
def test_story_and_claude_md_are_rejected_clearly(name: str) -> None:
    with pytest.raises(DefinitionError) as info:
        load_definition(seed(name))
    assert info.value.line == 1
    assert str(info.value).startswith(f"{seed(name)}:1: no YAML frontmatter")
    assert "starts with a '---' line" in str(info.value)


def test_hash_is_sha256_of_file_bytes() -> None:
    path = seed("backend-implementer.phase2.md")
    assert load_definition(path).definition_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    a = parse_definition("---\nname: a\ndescription: d\n---\nbody\n")
    b = parse_definition("---\nname: a\ndescription: d\n---\nbody \n")
    assert a.definition_hash != b.definition_hash


# -- fields -----------------------------------------------------------------------------

FULL = """---
name: full-agent
description: "Line one\\nline two"
tools: [Read, "Bash(git diff *), Grep", "Agent(worker, researcher)"]
disallowedTools: mcp__github, Write
model: claude-opus-5
permissionMode: acceptEdits
maxTurns: 7
skills: a, b
mcpServers:
  - github
  - local: {command: x}
hooks:
  PreToolUse:
    - matcher: Bash
      hooks: [{type: command, command: echo}]
memory: project
background: "true"
effort: high
isolation: worktree
color: cyan
initialPrompt: start
version: 3
author: someone
---
Prompt body.
"""


def test_every_field_and_unknown_keys_kept() -> None:
    d = parse_definition(FULL)
    assert d.description == "Line one\nline two"
    assert d.tools == ("Read", "Bash(git diff *)", "Grep", "Agent(worker, researcher)")
    assert d.disallowed_tools == ("mcp__github", "Write")
    assert d.model == "claude-opus-5"
    assert d.permission_mode == "acceptEdits"
    assert d.max_turns == 7
    assert d.skills == ("a", "b")
    assert d.mcp_servers == ("github", {"local": {"command": "x"}})
    assert d.hooks is not None and d.hooks["PreToolUse"][0]["matcher"] == "Bash"
    assert (d.memory, d.background, d.effort, d.isolation, d.color) == (
        "project", True, "high", "worktree", "cyan")
    assert d.initial_prompt == "start"
    assert d.extra == {"version": 3, "author": "someone"}
    assert d.prompt == "Prompt body."
    assert d.problems == ()
    sdk = d.to_sdk_dict()
    assert sdk["prompt"] == "Prompt body." and sdk["disallowedTools"] == ["mcp__github", "Write"]
    again = AgentDefinition.from_sdk_dict("full-agent", sdk)
    assert again.tools == d.tools and again.model == d.model


@pytest.mark.parametrize("value,expected", [
    ("Read, Grep, Bash(git diff *)", ["Read", "Grep", "Bash(git diff *)"]),
    ("Bash(uv run pytest:*),Read", ["Bash(uv run pytest:*)", "Read"]),
    ("Bash(a, b) Read", ["Bash(a, b)", "Read"]),
    ("  Read  ", ["Read"]),
])
def test_split_tool_list_respects_parentheses(value: str, expected: list[str]) -> None:
    assert split_tool_list(value) == (expected, [])


def test_tools_missing_star_empty() -> None:
    assert parse_definition("---\nname: a\ndescription: d\n---\n").tools is None
    assert parse_definition("---\nname: a\ndescription: d\ntools: '*'\n---\n").tools is None
    empty = parse_definition("---\nname: a\ndescription: d\ntools: []\n---\n")
    assert empty.tools == ()
    assert any("no tools" in p.message for p in empty.errors)


def test_unknown_tool_loads_but_is_reported_with_line() -> None:
    d = parse_definition("---\nname: a\ndescription: d\ntools: Read, Bassh\n---\n",
                         Path("x.md"))
    assert d.tools == ("Read", "Bassh")
    [p] = d.errors
    assert (p.line, p.severity) == (4, "error")
    assert "unknown tool 'Bassh'" in p.message and "'Bash'" in p.message
    assert str(p).startswith("x.md:4: error:")


@pytest.mark.parametrize("text,line,fragment", [
    ("---\nname: a\ndescription: \"unclosed\n---\n", 3, "malformed YAML"),
    ("---\nname: a\ntools:\n  - Read\n - Bash\n---\n", 5, "malformed YAML"),
    ("---\nname: a\n  bad: indent: x\n---\n", 3, "malformed YAML"),
    ("---\ndescription: d\n---\nbody", 2, "missing 'name'"),
    ("---\nname: a\n---\nbody", 2, "no 'description'"),
    ("---\nname: a\ndescription: d\nmodel: sonet\n---\n", 4, "did you mean 'sonnet'"),
    ("---\nname: a\ndescription: d\npermissionMode: yolo\n---\n", 4, "invalid permissionMode"),
    ("---\nname: a\ndescription: d\nmaxTurns: -1\n---\n", 4, "maxTurns"),
    ("---\nname: plugin:a\ndescription: d\n---\n", 2, "invalid name"),
    ("---\nname: a\ndescription: d\ntools: 5\n---\n", 4, "comma-separated string or a list"),
    ("---\nname: a\ndescription: d\n", 1, "never closed"),
    ("---\n- a\n- b\n---\n", 2, "must be a mapping"),
    ("", 1, "no YAML frontmatter"),
])
def test_definition_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(text, Path("agent.md"))
    assert info.value.line == line, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"agent.md:{line}: ")


def test_models_accepted() -> None:
    for model in ("sonnet", "OPUS", "haiku", "Inherit", "sonnet[1m]", "gpt-4o",
                  "llama3.1:8b", "openai/gpt-4o", "claude-sonnet-4-5"):
        parse_definition(f"---\nname: a\ndescription: d\nmodel: {model}\n---\n")
    d = parse_definition("---\nname: a\ndescription: d\nmodel: local\n---\n",
                         model_aliases=frozenset({"local"}))
    assert d.model == "local"


def test_lenient_yaml_like_claude_code_with_warning() -> None:
    d = parse_definition("---\nname: a\ndescription: Use when: the user asks\n---\nb\n")
    assert d.description == "Use when: the user asks"
    assert [p.severity for p in d.problems] == ["warning"]
    assert "not valid YAML" in d.problems[0].message


def test_cosmetic_values_dropped_with_warning() -> None:
    d = parse_definition("---\nname: a\ndescription: d\ncolor: magenta\ntool: Read\n---\nb\n")
    assert d.color is None
    assert {p.severity for p in d.problems} == {"warning"}
    assert any("did you mean 'tools'" in p.message for p in d.problems)


# -- discovery --------------------------------------------------------------------------

def write(path: Path, name: str, model: str = "sonnet", extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\nname: {name}\ndescription: {name} agent\nmodel: {model}\n"
                    f"{extra}---\nprompt of {path}\n")
    return path


def test_precedence_project_claude_then_agents_then_user(tmp_path: Path) -> None:
    root, home = tmp_path / "proj", tmp_path / "home"
    a = write(root / ".claude/agents/x.md", "x", "opus")
    b = write(root / "agents/sub/x.md", "x", "haiku")
    c = write(home / ".claude/agents/x.md", "x", "sonnet")
    write(home / ".claude/agents/only-user.md", "only-user")
    (root / "agents/README.md").write_text("# the agents package\n")
    (root / "agents/__init__.py").write_text("")
    reg = load_agents(root, home)
    assert reg.get("x").source == a and reg.get("x").scope == "project"
    assert [s.source for s in reg.shadowed_by("x")] == [b, c]
    assert reg.get("only-user").scope == "user"
    assert reg.names() == ["only-user", "x"]
    [readme] = reg.skipped
    assert readme.documentation and readme.path.name == "README.md"
    assert any(p.path == readme.path and p.severity == "error" for p in reg.problems())
    with pytest.raises(AgentNotFound, match=r"no subagent named 'nope'.*known: only-user, x"):
        reg.get("nope")


def test_identity_comes_from_name_and_duplicates_in_one_scope(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root / ".claude/agents/a-file.md", "same")
    write(root / ".claude/agents/b-file.md", "same")
    reg = load_agents(root, tmp_path / "h")
    source = reg.get("same").source
    assert source is not None and source.name == "a-file.md"
    assert any("duplicate name 'same'" in p.message for p in reg.problems())


def test_broken_files_are_skipped_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root / ".claude/agents/good.md", "good")
    bad = root / ".claude/agents/bad.md"
    bad.write_text("---\nname: bad\ndescription: 'oops\n---\n")
    reg = load_agents(root, tmp_path / "h")
    assert reg.names() == ["good"]
    [sk] = reg.skipped
    assert sk.path == bad and not sk.documentation and sk.error.line == 3


def test_validate_paths_reports_every_file(tmp_path: Path) -> None:
    loaded, problems = validate_paths([SEEDS])
    assert sorted(d.definition_hash for d in loaded) == sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in SEEDS.glob("backend-implementer*"))
    rejected = {p.path.name for p in problems if p.severity == "error" and p.path}
    assert rejected == {"README.md", "CLAUDE.orchestrator.md",
                        "story-4.2-event-store-backend-selection.md"}


def test_repo_example_agents_load_cleanly(tmp_path: Path) -> None:
    reg = load_agents(REPO, tmp_path)
    impl, rev = reg.get("backend-implementer"), reg.get("reviewer")
    assert reg.problems() == []
    assert impl.permission_mode == "acceptEdits" and "Bash(uv run pytest:*)" in (impl.tools or ())
    assert rev.disallowed_tools == ("Write", "Edit", "MultiEdit", "NotebookEdit")
    assert not set(rev.tool_names or ()) & {"Write", "Edit"}
