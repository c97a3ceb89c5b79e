"""Subagent definitions in Claude Code's Markdown format (YAML frontmatter + prompt body).

What is an error and what is only reported (and why):

* **Load errors** (``DefinitionError``, the file is not an agent): no frontmatter, YAML that
  neither strict nor Claude Code's lenient retry can read, missing ``name`` or
  ``description``, a ``name`` Claude Code rejects (``:`` or a leading ``-``), a field of the
  wrong type, an unknown model alias, an invalid ``permissionMode`` or ``maxTurns``. The
  last three Claude Code would log and ignore; we refuse them because silently falling
  back changes which model runs, what the agent may do, or how long it runs.
* **Problems** recorded on a loaded definition (``definition.problems``), printed by
  ``orchestrail agents validate``: an unknown tool name (severity *error*: Claude Code
  ignores such a tool, so the file still loads and behaves the same here, but it is almost
  always a typo), an empty tool list, malformed rules, cosmetic fields with bad values
  (*warning*, dropped like Claude Code does) and keys that look like misspelt fields.

``definition_hash`` is the SHA-256 of the file's exact bytes: the trail pins precisely what
ran (prompt whitespace included, since the body *is* the prompt), and anyone can check it
with ``sha256sum``. A canonical form would need its own versioned spec and would hide edits
such as YAML comments that reviewers may still care about. Definitions that come from JSON
(``--agents`` / SDK form) have no file and hash the canonical JSON of their SDK form.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.errors import DefinitionError
from agents.frontmatter import parse_frontmatter
from agents.rules import canonical_tool, is_known_tool, parse_rule, split_tool_list

PermissionMode = Literal["default", "acceptEdits", "auto", "dontAsk", "bypassPermissions", "plan"]
PERMISSION_MODES: tuple[str, ...] = (
    "default", "acceptEdits", "auto", "dontAsk", "bypassPermissions", "plan", "manual")
#: Claude Code's model aliases; ``[1m]`` suffixes (``sonnet[1m]``) are accepted too.
MODEL_ALIASES: frozenset[str] = frozenset(
    {"sonnet", "opus", "haiku", "fable", "inherit", "opusplan", "default"})
COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "cyan")
EFFORTS = ("low", "medium", "high", "xhigh", "max")
MEMORY_SCOPES = ("user", "project", "local")

#: frontmatter key -> model attribute
FIELDS: dict[str, str] = {
    "name": "name", "description": "description", "tools": "tools",
    "disallowedTools": "disallowed_tools", "model": "model", "permissionMode": "permission_mode",
    "maxTurns": "max_turns", "skills": "skills", "mcpServers": "mcp_servers", "hooks": "hooks",
    "memory": "memory", "background": "background", "effort": "effort", "isolation": "isolation",
    "color": "color", "initialPrompt": "initial_prompt",
}
_BAD_NAME = re.compile(r"[:/\\\s]|^-")
_GOOD_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
MAX_FILE_BYTES = 1_000_000

Severity = Literal["error", "warning"]


class Problem(BaseModel):
    """One finding about a file, printed as ``file:line: severity: message``."""

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    line: int | None = None
    severity: Severity = "error"
    message: str

    def __str__(self) -> str:
        where = f"{self.path}" if self.path is not None else "<definition>"
        if self.line:
            where += f":{self.line}"
        return f"{where}: {self.severity}: {self.message}"


class AgentDefinition(BaseModel):
    """A Claude Code subagent. Field names are snake_case; ``to_sdk_dict`` gives camelCase."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    description: str
    prompt: str = ""
    #: None = the key was absent: inherit every tool. () = no tools at all.
    tools: tuple[str, ...] | None = None
    disallowed_tools: tuple[str, ...] = ()
    model: str = "inherit"
    #: None = inherit the parent's mode.
    permission_mode: PermissionMode | None = None
    max_turns: int | None = None
    skills: tuple[str, ...] | None = None
    mcp_servers: tuple[Any, ...] | None = None
    hooks: dict[str, Any] | None = None
    memory: Literal["user", "project", "local"] | None = None
    background: bool | None = None
    effort: str | int | None = None
    isolation: str | None = None
    color: str | None = None
    initial_prompt: str | None = None
    #: unknown frontmatter keys, kept verbatim (forward compatibility)
    extra: dict[str, Any] = Field(default_factory=dict)

    source: Path | None = None
    scope: str | None = None
    definition_hash: str = ""
    #: 1-based file line of each frontmatter key, for error messages
    key_lines: dict[str, int] = Field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    @property
    def tool_names(self) -> tuple[str, ...] | None:
        """Distinct canonical tool names from ``tools`` (``Task`` -> ``Agent``), in order."""
        if self.tools is None:
            return None
        seen: dict[str, None] = {}
        for entry in self.tools:
            try:
                seen.setdefault(canonical_tool(parse_rule(entry).tool), None)
            except ValueError:
                continue
        return tuple(seen)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key)

    def to_sdk_dict(self) -> dict[str, Any]:
        """The ``--agents`` JSON / Agent SDK ``AgentDefinition`` form (camelCase)."""
        out: dict[str, Any] = {"description": self.description, "prompt": self.prompt}
        for key, attr in FIELDS.items():
            if key in ("name", "description"):
                continue
            value = getattr(self, attr)
            if value is None or (attr == "disallowed_tools" and not value):
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        out.update(self.extra)
        return out

    @classmethod
    def from_sdk_dict(cls, name: str, data: dict[str, Any], *, source: str = "json",
                      model_aliases: frozenset[str] = frozenset()) -> AgentDefinition:
        """Build from the ``--agents`` JSON form (``prompt`` instead of a Markdown body)."""
        from eventstore.canonical import canonical_json

        if not isinstance(data, dict):
            raise DefinitionError(f"agent {name!r}: expected a JSON object", source)
        fm = dict(data)
        prompt = fm.pop("prompt", None)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DefinitionError(f"agent {name!r}: 'prompt' is required (a non-empty string)",
                                  source)
        fm["name"] = name
        digest = hashlib.sha256(canonical_json({"name": name, **data}).encode()).hexdigest()
        return _build(fm, prompt.strip(), None, {}, digest, None, model_aliases)


def parse_definition(data: bytes | str, path: Path | None = None, *, scope: str | None = None,
                     model_aliases: frozenset[str] = frozenset()) -> AgentDefinition:
    """Parse a subagent file's content. Raises DefinitionError (file:line: message)."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_FILE_BYTES:
        raise DefinitionError(f"file is {len(raw)} bytes; a subagent file is at most "
                              f"{MAX_FILE_BYTES}", path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"not UTF-8 text (byte {exc.start})", path) from None
    fm = parse_frontmatter(text, path)
    problems: list[Problem] = []
    if fm.lenient:
        problems.append(Problem(path=path, line=None, severity="warning", message=(
            f"frontmatter is not valid YAML ({fm.lenient}); loaded the way Claude Code does, "
            "by quoting values with special characters - quote them yourself")))
    return _build(fm.data, fm.body.strip(), path, fm.key_lines, hashlib.sha256(raw).hexdigest(),
                  scope, model_aliases, problems)


def load_definition(path: Path, *, scope: str | None = None,
                    model_aliases: frozenset[str] = frozenset()) -> AgentDefinition:
    """Read and parse one file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DefinitionError(f"cannot read: {exc.strerror or exc}", path) from None
    return parse_definition(raw, path, scope=scope, model_aliases=model_aliases)


def check_model(value: str, aliases: frozenset[str] = frozenset()) -> str | None:
    """Return an error message for an unknown alias, or None if the model is acceptable.

    A bare lowercase word is taken as an alias (``sonet`` is a typo, not a model id); a
    value with a digit, ``-``, ``.``, ``/`` or ``:`` is a full model id passed through as is
    (``claude-opus-5``, ``gpt-4o``, ``llama3.1:8b``). Aliases defined in ``orchestrail.yaml``
    are passed in ``aliases``.
    """
    base = re.sub(r"\[[0-9a-z]+\]$", "", value.strip().lower())
    known = MODEL_ALIASES | {a.lower() for a in aliases}
    if base in known or not re.fullmatch(r"[a-z]+", base):
        return None
    close = difflib.get_close_matches(base, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (f"unknown model alias {value!r}: use one of {', '.join(sorted(MODEL_ALIASES))}, "
            f"a full model id such as claude-sonnet-4-5, or an alias from orchestrail.yaml{hint}")


def _build(fm: dict[str, Any], prompt: str, path: Path | None, key_lines: dict[str, int],
           digest: str, scope: str | None, model_aliases: frozenset[str],
           problems: list[Problem] | None = None) -> AgentDefinition:
    problems = problems if problems is not None else []

    def line(key: str) -> int | None:
        return key_lines.get(key)

    def fail(key: str | None, message: str) -> DefinitionError:
        # a missing key has no line: point at the first frontmatter line
        return DefinitionError(message, path, (line(key) if key else None) or 2)

    def note(key: str, message: str, severity: Severity = "error") -> None:
        problems.append(Problem(path=path, line=line(key), severity=severity, message=message))

    values: dict[str, Any] = {}
    name = fm.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        raise fail("name", "missing 'name': a subagent needs a name (lowercase letters and "
                   "hyphens) and a description")
    if not isinstance(name, str):
        raise fail("name", f"'name' must be a string, got {type(name).__name__}")
    name = name.strip()
    if _BAD_NAME.search(name):
        raise fail("name", f"invalid name {name!r}: it must not contain ':', '/' or spaces, "
                   "nor start with '-'")
    if not _GOOD_NAME.match(name):
        note("name", f"name {name!r} should be lowercase letters, digits and hyphens",
             "warning")
    values["name"] = name
    desc = fm.get("description")
    if desc is None or (isinstance(desc, str) and not desc.strip()):
        raise fail("description" if "description" in fm else "name",
                   f"agent {name!r} has no 'description': Claude Code uses it to decide when "
                   "to delegate, and skips agents without one")
    if not isinstance(desc, str | int | float):
        raise fail("description", f"'description' must be text, got {type(desc).__name__}")
    values["description"] = str(desc).replace("\\n", "\n").strip()

    for key in ("tools", "disallowedTools", "skills"):
        if key not in fm:
            continue
        raw = fm[key]
        if raw is None or raw == "" or raw == []:
            entries: list[str] = []
        elif isinstance(raw, str):
            entries, errs = split_tool_list(raw)
            for e in errs:
                note(key, f"{key}: {e}")
        elif isinstance(raw, list):
            entries = []
            for item in raw:
                if not isinstance(item, str):
                    note(key, f"{key}: ignored non-string item {item!r}")
                    continue
                got, errs = split_tool_list(item)
                entries += got
                for e in errs:
                    note(key, f"{key}: {e}")
        else:
            raise fail(key, f"{key!r} must be a comma-separated string or a list, "
                       f"got {type(raw).__name__}")
        if key == "skills":
            values["skills"] = tuple(entries)
            continue
        if key == "tools" and "*" in entries:
            values["tools"] = None  # '*' = all tools, same as omitting the key
            continue
        for entry in entries:
            try:
                rule = parse_rule(entry)
            except ValueError as exc:
                note(key, f"{key}: malformed rule: {exc}")
                continue
            if not is_known_tool(rule.tool):
                close = difflib.get_close_matches(rule.tool, sorted(_known_names()), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                note(key, f"{key}: unknown tool {rule.tool!r}{hint}; Claude Code ignores it")
        if key == "tools" and not entries:
            note(key, "tools is empty: the agent would have no tools (Claude Code refuses to "
                 "launch such an agent); omit the key to inherit all tools")
        values["tools" if key == "tools" else "disallowed_tools"] = tuple(entries)

    model = fm.get("model")
    if model is not None:
        if not isinstance(model, str) or not model.strip():
            raise fail("model", "'model' must be an alias (sonnet, opus, haiku, inherit) or a "
                       "model id")
        err = check_model(model, model_aliases)
        if err:
            raise fail("model", err)
        values["model"] = "inherit" if model.strip().lower() == "inherit" else model.strip()

    mode = fm.get("permissionMode")
    if mode is not None:
        if mode not in PERMISSION_MODES:
            raise fail("permissionMode", f"invalid permissionMode {mode!r}: expected one of "
                       f"{', '.join(PERMISSION_MODES)}")
        values["permission_mode"] = "default" if mode == "manual" else mode

    turns = fm.get("maxTurns")
    if turns is not None:
        if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
            raise fail("maxTurns", f"maxTurns must be a positive integer, got {turns!r}")
        values["max_turns"] = turns

    servers = fm.get("mcpServers")
    if servers is not None:
        items = servers if isinstance(servers, list) else [servers]
        ok = [s for s in items if isinstance(s, str) or (isinstance(s, dict) and len(s) >= 1)]
        if len(ok) != len(items):
            note("mcpServers", "mcpServers: each item is a server name or {name: config}")
        values["mcp_servers"] = tuple(ok)

    hooks = fm.get("hooks")
    if hooks is not None:
        if isinstance(hooks, dict) and all(isinstance(v, list) for v in hooks.values()):
            values["hooks"] = hooks
        else:
            note("hooks", "hooks must map event names to lists of {matcher, hooks} groups; "
                 "dropped (as Claude Code does)")

    def choice(key: str, allowed: tuple[str, ...], attr: str, severity: Severity) -> None:
        value = fm.get(key)
        if value is None:
            return
        if value in allowed:
            values[attr] = value
        else:
            note(key, f"{key} {value!r} is not one of {', '.join(allowed)}; ignored", severity)

    choice("memory", MEMORY_SCOPES, "memory", "error")
    choice("color", COLORS, "color", "warning")
    choice("isolation", ("worktree",), "isolation", "warning")
    effort = fm.get("effort")
    if effort is not None:
        if effort in EFFORTS or (isinstance(effort, int) and not isinstance(effort, bool)):
            values["effort"] = effort
        else:
            note("effort", f"effort {effort!r} is not one of {', '.join(EFFORTS)}; ignored",
                 "warning")
    bg = fm.get("background")
    if bg is not None:
        if isinstance(bg, bool) or bg in ("true", "false"):
            values["background"] = bg in (True, "true")
        else:
            note("background", f"background must be true or false, got {bg!r}; ignored")
    ip = fm.get("initialPrompt")
    if ip is not None:
        values["initial_prompt"] = str(ip)

    extra = {k: v for k, v in fm.items() if k not in FIELDS}
    for key in extra:
        close = difflib.get_close_matches(key, list(FIELDS), n=1, cutoff=0.75)
        if close:
            note(key, f"unknown field {key!r} (kept in extra); did you mean {close[0]!r}?",
                 "warning")
    if not prompt:
        note("name", "the body (the system prompt) is empty", "warning")
    return AgentDefinition(
        **values, prompt=prompt, extra=extra, source=path, scope=scope, definition_hash=digest,
        key_lines=dict(key_lines), problems=tuple(problems))


def _known_names() -> frozenset[str]:
    from agents.rules import CLAUDE_CODE_TOOLS

    return CLAUDE_CODE_TOOLS
