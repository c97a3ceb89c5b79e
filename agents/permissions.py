"""Claude Code permission rules, permission modes and workspace confinement.

One question: may this agent run this tool call? The answer is a ``Decision`` (allow,
deny or ask) naming the rule that decided and a reason a human can read; the agent loop
records each one as an event. Order of evaluation for every call (and for every part of a
compound shell command):

1. availability: a tool the agent's ``disallowedTools`` removes, or that its ``tools``
   list does not name, is denied;
2. hard limits: an unparseable command, a path outside the workspace (after symlinks),
   a redirection to a non-literal target - denied whatever the rules or mode say;
3. ``deny`` rules (first match wins), then ``plan`` mode's read-only limit;
4. the agent's own restriction: if ``tools`` names a tool only with specifiers
   (``Bash(uv run pytest:*)``), calls that match none of them are denied;
5. ``ask`` rules, then ``allow`` rules (including those specifiers);
6. the mode's default for an unmatched call.

Rule specificity never matters, only the kind (deny > ask > allow), as in Claude Code.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from agents.errors import PermissionConfigError
from agents.paths import is_within, path_matches, resolve
from agents.rules import (
    EDIT_TOOLS,
    NO_PERMISSION_TOOLS,
    READ_TOOLS,
    Rule,
    canonical_tool,
    parse_rule,
)
from agents.shell import Redirect, ShellSyntaxError, SimpleCommand, Word, split_commands

if TYPE_CHECKING:
    from agents.definition import AgentDefinition

Behavior = Literal["allow", "deny", "ask"]
MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto", "manual")

#: Input fields a ``Tool(param:value)`` deny/ask rule may test (never the primary field).
PARAM_KEYS: dict[str, frozenset[str]] = {
    "Bash": frozenset({"run_in_background", "timeout", "description"}),
    "Agent": frozenset({"model", "description", "run_in_background", "isolation"}),
    "Read": frozenset({"offset", "limit"}),
    "Edit": frozenset({"replace_all"}),
    "Grep": frozenset({"glob", "type", "output_mode", "multiline"}),
    "WebFetch": frozenset({"prompt"}),
}
#: Command prefixes Claude Code strips before matching (they run the rest as a command).
WRAPPERS = frozenset({"timeout", "time", "nice", "nohup", "stdbuf", "command", "builtin",
                      "noglob", "xargs"})
#: Variables whose assignment changes *what* runs; a command prefixed with one is matched
#: with the assignment kept, so ``LD_PRELOAD=x uv run pytest`` never matches
#: ``Bash(uv run pytest:*)``.
DANGEROUS_ENV = re.compile(
    r"^(LD_\w*|DYLD_\w*|\w*PATH|PYTHON\w*|PERL\w*|RUBY\w*|NODE_OPTIONS|BASH_ENV|ENV|IFS|PS4|"
    r"SHELLOPTS|BASHOPTS|PROMPT_COMMAND|GIT_\w*|HOME|SHELL|EDITOR|VISUAL|PAGER|UV_\w*|PIP_\w*|"
    r"NPM_CONFIG_\w*|npm_config_\w*|CC|CXX|MAKEFLAGS|TMPDIR|XDG_\w*|GCONV_\w*|LOCPATH|"
    r"MALLOC_\w*|JAVA_TOOL_OPTIONS|_JAVA_OPTIONS|CLASSPATH|BROWSER|SSH_\w*|HISTFILE)\+?=")
SAFE_DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})


@dataclass(frozen=True)
class Decision:
    """The outcome for one tool call (or one part of a compound command)."""

    behavior: Behavior
    reason: str
    tool: str = ""
    rule: str | None = None
    #: what decided: deny rule, ask rule, allow rule, agent tools, agent disallowedTools,
    #: workspace, parser, mode:<mode>, approver:<kind>
    source: str | None = None
    subject: str | None = None  # the command part or path the decision is about
    parts: tuple[Decision, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.behavior == "allow"

    def to_dict(self) -> dict[str, Any]:
        """Event payload form (``tool.denied`` / ``approval.*`` data)."""
        out: dict[str, Any] = {"behavior": self.behavior, "reason": self.reason,
                               "tool": self.tool}
        for key in ("rule", "source", "subject"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.parts:
            out["parts"] = [p.to_dict() for p in self.parts]
        return out


@dataclass(frozen=True)
class SourcedRule:
    rule: Rule
    source: str

    @property
    def text(self) -> str:
        return self.rule.text


def _parse_rules(texts: Iterable[str], kind: str, source: str) -> tuple[SourcedRule, ...]:
    out = []
    for text in texts:
        if not isinstance(text, str):
            raise PermissionConfigError(f"{source}: {kind} rule {text!r} is not a string")
        try:
            rule = parse_rule(text)
        except ValueError as exc:
            raise PermissionConfigError(f"{source}: bad {kind} rule: {exc}") from None
        if kind == "allow" and (rule.tool == "*" or (
                "*" in rule.tool and not re.match(r"^mcp__[^*_]+__", rule.tool))):
            raise PermissionConfigError(
                f"{source}: allow rule {text!r}: a tool-name wildcard is only allowed after "
                "a literal mcp__<server>__ prefix (deny and ask rules may use * and mcp__*)")
        if kind == "allow" and rule.specifier and _param_rule(rule):
            raise PermissionConfigError(
                f"{source}: allow rule {text!r}: parameter rules (Tool(param:value)) are for "
                "deny and ask only")
        out.append(SourcedRule(rule, source))
    return tuple(out)


@dataclass(frozen=True)
class PermissionRules:
    """``permissions.allow/ask/deny`` lists, as in Claude Code's settings.json."""

    allow: tuple[SourcedRule, ...] = ()
    ask: tuple[SourcedRule, ...] = ()
    deny: tuple[SourcedRule, ...] = ()

    @classmethod
    def from_lists(cls, allow: Iterable[str] = (), ask: Iterable[str] = (),
                   deny: Iterable[str] = (), source: str = "settings") -> PermissionRules:
        return cls(_parse_rules(allow, "allow", source), _parse_rules(ask, "ask", source),
                   _parse_rules(deny, "deny", source))

    def merged(self, other: PermissionRules) -> PermissionRules:
        return PermissionRules(self.allow + other.allow, self.ask + other.ask,
                               self.deny + other.deny)


@dataclass(frozen=True)
class Settings:
    rules: PermissionRules = field(default_factory=PermissionRules)
    default_mode: str | None = None
    additional_directories: tuple[Path, ...] = ()


def load_settings(root: Path, home: Path | None = None) -> Settings:
    """Merge ``permissions`` from ``~/.claude/settings.json``, ``.claude/settings.json`` and
    ``.claude/settings.local.json`` (rules accumulate; a deny anywhere wins)."""
    home = Path.home() if home is None else home
    rules = PermissionRules()
    mode: str | None = None
    dirs: list[Path] = []
    for path in (home / ".claude" / "settings.json", root / ".claude" / "settings.json",
                 root / ".claude" / "settings.local.json"):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PermissionConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        except OSError as exc:
            raise PermissionConfigError(f"{path}: cannot read: {exc.strerror}") from None
        perms = data.get("permissions") if isinstance(data, dict) else None
        if perms is None:
            continue
        if not isinstance(perms, dict):
            raise PermissionConfigError(f"{path}: 'permissions' must be an object")
        rules = rules.merged(PermissionRules.from_lists(
            perms.get("allow") or (), perms.get("ask") or (), perms.get("deny") or (),
            source=str(path)))
        if isinstance(perms.get("defaultMode"), str):
            mode = perms["defaultMode"]
        for d in perms.get("additionalDirectories") or ():
            dirs.append(Path(os.path.expanduser(str(d))))
    return Settings(rules, mode, tuple(dirs))


def _param_rule(rule: Rule) -> tuple[str, str] | None:
    if rule.specifier is None:
        return None
    m = re.match(r"^([A-Za-z_]+):(.*)$", rule.specifier, re.S)
    if m and m.group(1) in PARAM_KEYS.get(rule.canonical_tool, frozenset()):
        return m.group(1), m.group(2)
    return None


@lru_cache(maxsize=2048)
def bash_pattern(spec: str) -> re.Pattern[str]:
    """``npm run test:*`` == ``npm run test *``: a trailing `` *`` also matches nothing, so
    it is a word-boundary prefix (``npm run test``, ``npm run test -x``, not ``testing``).
    ``*`` elsewhere matches any text, spaces included."""
    if spec.endswith(":*"):
        spec = spec[:-2] + " *"
    optional_tail = spec.endswith(" *")
    body = spec[:-2] if optional_tail else spec
    regex = ".*".join(re.escape(part) for part in body.split("*"))
    if optional_tail:
        regex += "(?: .*)?"
    return re.compile("^" + regex + "$", re.S)


def _strip_wrappers(words: list[Word]) -> list[Word]:
    """Drop ``timeout 5``, ``nice -n 5``, ``nohup`` ... so the wrapped command is matched."""
    w = list(words)
    while w and not w[0].quoted and w[0].text in WRAPPERS:
        head, rest = w[0].text, w[1:]
        if head == "command" and rest and rest[0].text in ("-v", "-V"):
            break
        if head == "xargs" and rest and rest[0].text.startswith("-"):
            break
        i = 0
        while i < len(rest) and rest[i].text.startswith("-") and rest[i].text != "-":
            opt = rest[i].text
            i += 1
            if head in ("timeout", "nice", "stdbuf") and opt in ("-s", "-k", "-n", "-i", "-o",
                                                                 "-e", "--signal",
                                                                 "--kill-after"):
                i += 1  # option with a separate value
        if head == "timeout" and i < len(rest):
            i += 1  # the duration
        if i >= len(rest):
            break
        w = rest[i:]
    return w


@dataclass
class _Forms:
    """The strings a command part is matched against."""

    allow: tuple[str, ...]
    deny: tuple[str, ...]
    display: str


def _forms(cmd: SimpleCommand) -> _Forms:
    dangerous = [a for a in cmd.assignments if DANGEROUS_ENV.match(a.raw)]
    words = _strip_wrappers(list(cmd.words)) if not dangerous else list(cmd.words)
    prefix = list(cmd.assignments) if dangerous else []
    seq = prefix + words
    raw = " ".join(x.raw for x in seq)
    canonical = shlex.join(x.text for x in seq)
    plain = " ".join(x.text for x in seq)
    deny = {raw, canonical, plain, " ".join(x.text for x in words)}
    if words and "/" in words[0].text:
        deny.add(" ".join([os.path.basename(words[0].text)] + [x.text for x in words[1:]]))
    return _Forms((raw, canonical), tuple(sorted(deny)), raw)


class PermissionEngine:
    """Decides tool calls for one agent in one workspace. Cheap to call; no I/O except
    ``realpath`` on file paths."""

    def __init__(self, workspace: Path, *, mode: str | None = "default",
                 rules: PermissionRules | None = None, tools: Sequence[str] | None = None,
                 disallowed_tools: Sequence[str] = (), home: Path | None = None,
                 additional_dirs: Sequence[Path] = (), euid: int | None = None,
                 sandbox: bool | None = None) -> None:
        mode = mode or "default"
        if mode not in MODES:
            raise PermissionConfigError(f"unknown permission mode {mode!r}: expected one of "
                                        f"{', '.join(MODES)}")
        # 'manual' is Claude Code's new name for 'default'; 'auto' needs Claude Code's
        # classifier model, which we do not have, so it behaves like 'default' (asks).
        self.mode = "default" if mode in ("manual", "auto") else mode
        self.requested_mode = mode
        if self.mode == "bypassPermissions":
            euid = os.geteuid() if euid is None and hasattr(os, "geteuid") else euid
            if sandbox is None:
                sandbox = os.environ.get("IS_SANDBOX") == "1" or \
                    os.environ.get("ORCHESTRAIL_SANDBOX") == "1"
            if euid == 0 and not sandbox:
                raise PermissionConfigError(
                    "permission mode bypassPermissions is refused when running as root (as "
                    "Claude Code refuses --dangerously-skip-permissions); run as an "
                    "unprivileged user, or set IS_SANDBOX=1 inside a disposable container")
        self.root = Path(os.path.realpath(workspace))
        self.home = Path(os.path.realpath(home if home is not None else Path.home()))
        self.roots = (self.root, *(Path(os.path.realpath(d)) for d in additional_dirs))
        rules = rules or PermissionRules()
        self.available: set[str] | None = None
        self.restrictions: dict[str, list[Rule]] = {}
        agent_allow: list[SourcedRule] = []
        if tools is not None:
            self.available = set()
            bare: set[str] = set()
            for entry in tools:
                try:
                    rule = parse_rule(entry)
                except ValueError:
                    continue
                name = rule.canonical_tool
                self.available.add(name)
                if rule.specifier is None:
                    bare.add(name)
                else:
                    self.restrictions.setdefault(name, []).append(rule)
                    agent_allow.append(SourcedRule(rule, "agent tools"))
            for name in bare:
                self.restrictions.pop(name, None)
        self.removed: list[Rule] = []
        agent_deny: list[SourcedRule] = []
        for entry in disallowed_tools:
            try:
                rule = parse_rule(entry)
            except ValueError:
                continue
            if rule.specifier is None:
                self.removed.append(rule)
            else:
                agent_deny.append(SourcedRule(rule, "agent disallowedTools"))
        self.deny = rules.deny + tuple(agent_deny)
        self.ask = rules.ask
        self.allow = rules.allow + tuple(agent_allow)

    @classmethod
    def for_agent(cls, definition: AgentDefinition, workspace: Path, *,
                  rules: PermissionRules | None = None, mode: str | None = None,
                  **kwargs: Any) -> PermissionEngine:
        """Engine for a definition: its tools, disallowedTools and permissionMode (unless a
        ``mode`` is forced, e.g. the parent's)."""
        return cls(workspace, mode=mode or definition.permission_mode or "default", rules=rules,
                   tools=definition.tools, disallowed_tools=definition.disallowed_tools,
                   **kwargs)

    # -- entry point ---------------------------------------------------------------------
    def check(self, tool: str, tool_input: Mapping[str, Any] | None = None) -> Decision:
        """Decide one tool call. Never raises for bad input: that is a deny."""
        name = canonical_tool(tool)
        inp: Mapping[str, Any] = tool_input if isinstance(tool_input, Mapping) else {}
        gone = self._unavailable(name)
        if gone is not None:
            return gone
        param = self._param_rules(name, inp)
        if param is not None:
            return param
        if name == "Bash":
            return self._check_bash(inp)
        if name in READ_TOOLS or name in EDIT_TOOLS:
            return self._check_file_tool(name, inp)
        if name == "WebFetch":
            url = inp.get("url")
            host = urlsplit(url).hostname if isinstance(url, str) else None
            if not host or urlsplit(str(url)).scheme not in ("http", "https"):
                return Decision("deny", f"WebFetch needs an http(s) URL, got {url!r}", name,
                                source="parser")
            return self._decide(name, lambda r: _domain_matches(r, host.lower()), str(url))
        if name == "Agent":
            sub = inp.get("subagent_type")
            target = sub if isinstance(sub, str) else ""
            return self._decide(name, lambda r: _agent_matches(r, target), target or None)
        return self._decide(name, lambda r: False, None)

    # -- availability and parameter rules ------------------------------------------------
    def _unavailable(self, name: str) -> Decision | None:
        for rule in self.removed:
            if _tool_matches(rule.canonical_tool, name):
                return Decision("deny", f"{name} is removed by the agent's disallowedTools",
                                name, rule.text, "agent disallowedTools")
        if self.available is not None and name not in self.available and not any(
                a.startswith("mcp__") and _tool_matches(a, name) for a in self.available):
            listed = ", ".join(sorted(self.available)) or "none"
            return Decision("deny", f"{name} is not in the agent's tools ({listed})", name,
                            source="agent tools")
        return None

    def _param_rules(self, name: str, inp: Mapping[str, Any]) -> Decision | None:
        for kind, rules in (("deny", self.deny), ("ask", self.ask)):
            for sr in rules:
                pr = _param_rule(sr.rule)
                if pr and _tool_matches(sr.rule.canonical_tool, name):
                    key, want = pr
                    got = inp.get(key)
                    got_s = json.dumps(got) if isinstance(got, bool) else str(got)
                    if got is not None and fnmatch.fnmatchcase(got_s.lower(), want.lower()):
                        return self._rule_hit(kind, sr, name, f"{key}={got_s}")
        return None

    # -- the core ladder -----------------------------------------------------------------
    def _rule_hit(self, kind: str, sr: SourcedRule, name: str, subject: str | None) -> Decision:
        if kind == "deny":
            return Decision("deny", f"denied by rule {sr.text}", name, sr.text,
                            f"deny rule ({sr.source})", subject)
        if kind == "ask":
            if self.mode == "dontAsk":
                return Decision("deny", f"rule {sr.text} asks, and dontAsk mode denies "
                                "instead of asking", name, sr.text, f"ask rule ({sr.source})",
                                subject)
            return Decision("ask", f"rule {sr.text} requires approval", name, sr.text,
                            f"ask rule ({sr.source})", subject)
        return Decision("allow", f"allowed by rule {sr.text}", name, sr.text,
                        f"allow rule ({sr.source})" if sr.source != "agent tools"
                        else "agent tools", subject)

    def _decide(self, name: str, matches: Any, subject: str | None,
                deny_matches: Any = None, family: str | None = None) -> Decision:
        """deny -> plan -> agent restriction -> ask -> allow -> mode default."""
        deny_matches = deny_matches or matches
        for sr in self.deny:
            if self._applies(sr.rule, name, "deny") and (
                    sr.rule.specifier is None or deny_matches(sr.rule)) \
                    and not _param_rule(sr.rule):
                return self._rule_hit("deny", sr, name, subject)
        read_only = name in READ_TOOLS or name in NO_PERMISSION_TOOLS or name == "Agent"
        if self.mode == "plan" and not read_only:
            return Decision("deny", f"plan mode is read-only: {name} is not allowed", name,
                            source="mode:plan", subject=subject)
        restricted = self.restrictions.get(name)
        if restricted is None and name in EDIT_TOOLS:
            restricted = next((v for k, v in self.restrictions.items() if k in EDIT_TOOLS), None)
        if restricted and not any(matches(r) for r in restricted):
            allowed = ", ".join(r.text for r in restricted)
            return Decision("deny", f"the agent's tools limit {name} to {allowed}", name,
                            source="agent tools", subject=subject)
        for sr in self.ask:
            if self._applies(sr.rule, name, "ask") and (
                    sr.rule.specifier is None or deny_matches(sr.rule)) \
                    and not _param_rule(sr.rule):
                return self._rule_hit("ask", sr, name, subject)
        for sr in self.allow:
            if self._applies(sr.rule, name, "allow") and (
                    sr.rule.specifier is None or matches(sr.rule)):
                return self._rule_hit("allow", sr, name, subject)
        return self._fallback(name, subject, family)

    def _applies(self, rule: Rule, name: str, kind: str) -> bool:
        rt = rule.canonical_tool
        if _tool_matches(rt, name):
            return True
        if name in EDIT_TOOLS and rt in EDIT_TOOLS:
            return True  # Edit rules cover every file-editing tool
        if rule.specifier is not None and rt == "Read":
            if name in READ_TOOLS:
                return True
            if kind == "deny" and name in EDIT_TOOLS:
                return True  # a Read deny also blocks editing that path
        return False

    def _fallback(self, name: str, subject: str | None, family: str | None) -> Decision:
        mode = self.mode
        src = f"mode:{self.requested_mode}"
        if name in NO_PERMISSION_TOOLS:
            return Decision("allow", f"{name} needs no permission", name, source=src,
                            subject=subject)
        if name in READ_TOOLS or family == "read":
            return Decision("allow", "reading inside the workspace is allowed", name,
                            source=src, subject=subject)
        if name == "Agent":
            return Decision("allow", "delegating to a subagent needs no permission", name,
                            source=src, subject=subject)
        if mode == "bypassPermissions":
            return Decision("allow", "bypassPermissions mode allows what no rule denies", name,
                            source=src, subject=subject)
        if name in EDIT_TOOLS and mode == "acceptEdits":
            return Decision("allow", "acceptEdits mode allows file edits in the workspace",
                            name, source=src, subject=subject)
        if mode == "dontAsk":
            return Decision("deny", f"no rule allows this {name} call, and dontAsk mode "
                            "denies instead of asking", name, source=src, subject=subject)
        return Decision("ask", f"no rule allows this {name} call", name, source=src,
                        subject=subject)

    # -- files ---------------------------------------------------------------------------
    def _confine(self, name: str, raw: str, cwd: Path | None = None) -> tuple[Path | None,
                                                                           Decision | None]:
        base = cwd or self.root
        try:
            real = resolve(raw, base, self.home)
        except ValueError as exc:
            return None, Decision("deny", f"invalid path {raw!r}: {exc}", name,
                                  source="workspace", subject=raw)
        if any(is_within(real, r) for r in self.roots):
            return real, None
        lexical = Path(os.path.normpath(os.path.join(base, os.path.expanduser(raw))))
        via = " through a symlink" if any(is_within(lexical, r) for r in self.roots) else ""
        return None, Decision(
            "deny", f"path {raw!r} resolves{via} to {real}, outside the workspace {self.root}",
            name, source="workspace", subject=raw)

    def _path_decision(self, name: str, raw: str, cwd: Path | None = None,
                       family: str | None = None) -> Decision:
        real, denied = self._confine(name, raw, cwd)
        if denied is not None:
            return denied
        assert real is not None
        lexical = Path(os.path.normpath(os.path.join(cwd or self.root, raw)))

        def matches(rule: Rule) -> bool:
            return rule.specifier is not None and path_matches(
                rule.specifier, real, project_root=self.root, cwd=self.root, home=self.home)

        probes = [real, lexical]
        if name in ("Glob", "Grep", "LS"):
            # searching a directory inside a denied tree reads that tree; finer-grained
            # denies (secrets/*.key) must be applied by the tool to each result file
            probes += [real / "x", lexical / "x"]

        def deny_matches(rule: Rule) -> bool:
            return rule.specifier is not None and any(path_matches(
                rule.specifier, p, project_root=self.root, cwd=self.root, home=self.home)
                for p in probes)

        return self._decide(name, matches, raw, deny_matches, family)

    def _check_file_tool(self, name: str, inp: Mapping[str, Any]) -> Decision:
        key = "notebook_path" if name.startswith("Notebook") else (
            "path" if name in ("Glob", "Grep", "LS") else "file_path")
        raw = inp.get(key)
        if raw is None and key == "path":
            raw = "."
        if not isinstance(raw, str) or not raw:
            return Decision("deny", f"{name} needs a '{key}' string", name, source="parser")
        for extra in ("pattern", "glob") if name in ("Glob", "Grep") else ():
            pat = inp.get(extra)
            if name == "Grep" and extra == "pattern":
                continue  # Grep's pattern is a regex over contents, not a path
            if isinstance(pat, str) and (pat.startswith(("/", "~")) or
                                         ".." in Path(pat).parts):
                return Decision("deny", f"{name} {extra} {pat!r} reaches outside the "
                                "workspace (absolute, ~ or '..')", name, source="workspace",
                                subject=pat)
        return self._path_decision(name, raw)

    # -- shell ---------------------------------------------------------------------------
    def _check_bash(self, inp: Mapping[str, Any]) -> Decision:
        command = inp.get("command")
        if not isinstance(command, str) or not command.strip():
            return Decision("deny", "Bash needs a non-empty 'command' string", "Bash",
                            source="parser")
        try:
            commands = split_commands(command)
        except ShellSyntaxError as exc:
            return Decision("deny", f"cannot parse the command safely ({exc}); denied",
                            "Bash", source="parser", subject=command)
        parts: list[Decision] = []
        cd_dirs: list[Path] = []
        for cmd in commands:
            parts.append(self._check_simple(cmd, cd_dirs))
            for redirect in cmd.redirects:
                parts.append(self._check_redirect(redirect, cd_dirs))
        return _combine("Bash", parts, command)

    def _check_simple(self, cmd: SimpleCommand, cd_dirs: list[Path]) -> Decision:
        if not cmd.words:
            bad = [a.raw for a in cmd.assignments if DANGEROUS_ENV.match(a.raw)]
            if not bad:
                return Decision("allow", "variable assignment or bare redirection", "Bash",
                                source="parser", subject=" ".join(
                                    a.raw for a in cmd.assignments) or None)
        forms = _forms(cmd)
        argv = cmd.argv
        if argv and argv[0] == "cd" and not cmd.assignments:
            target = cmd.words[1] if len(cmd.words) == 2 else None
            if target is not None and not target.expands:
                real, _ = self._confine("Bash", target.text)
                for sr in self.deny:
                    if _tool_matches(sr.rule.canonical_tool, "Bash") and (
                            sr.rule.specifier is None or any(
                                bash_pattern(sr.rule.specifier).match(f)
                                for f in forms.deny)):
                        return self._rule_hit("deny", sr, "Bash", forms.display)
                cd_dirs.append(resolve(target.text, self.root, self.home))
                if real is not None:
                    return Decision("allow", "cd inside the workspace", "Bash",
                                    source="workspace", subject=forms.display)
            else:
                cd_dirs.append(self.home)  # unknown target: relative paths become unconfinable

        def matches(rule: Rule) -> bool:
            return rule.specifier is not None and any(
                bash_pattern(rule.specifier).match(f) for f in forms.allow)

        def deny_matches(rule: Rule) -> bool:
            return rule.specifier is not None and any(
                bash_pattern(rule.specifier).match(f) for f in forms.deny)

        return self._decide("Bash", matches, forms.display, deny_matches)

    def _check_redirect(self, r: Redirect, cd_dirs: list[Path]) -> Decision:
        shown = f"{r.fd}{r.op} {r.target.raw if r.target else ''}".strip()
        if r.kind in ("dup", "heredoc", "herestring", "process") or r.target is None:
            return Decision("allow", f"{r.kind} redirection", "Bash", source="parser",
                            subject=shown)
        target = r.target
        if target.expands:
            return Decision("deny", f"redirection target {target.raw!r} is not a literal path "
                            "(it expands), so it cannot be confined", "Bash",
                            source="workspace", subject=shown)
        path = target.text
        if path in SAFE_DEVICES or re.fullmatch(r"/dev/fd/\d+", path):
            return Decision("allow", f"redirection to {path}", "Bash", source="parser",
                            subject=shown)
        tool = "Edit" if r.kind == "write" else "Read"
        if tool == "Edit" and all(self._unavailable(t) is not None for t in EDIT_TOOLS):
            return Decision("deny", f"writing {path!r} through a redirection needs the Edit or "
                            "Write tool, which this agent does not have", "Bash",
                            source="agent tools", subject=shown)
        decisions = [self._path_decision(tool, path, None, "read" if tool == "Read" else None)]
        if not os.path.isabs(path) and not path.startswith("~"):
            decisions += [self._path_decision(tool, path, d) for d in cd_dirs]
        worst = _combine(tool, decisions, shown)
        return Decision(worst.behavior, f"redirection {shown}: {worst.reason}", "Bash",
                        worst.rule, worst.source, shown)


def _combine(tool: str, parts: list[Decision], subject: str) -> Decision:
    """Every part must be allowed: the first deny wins, then the first ask."""
    for behavior in ("deny", "ask"):
        for p in parts:
            if p.behavior == behavior:
                if len(parts) == 1:
                    return Decision(p.behavior, p.reason, tool, p.rule, p.source, subject)
                return Decision(behavior, f"{p.subject!r}: {p.reason}", tool, p.rule, p.source,
                                subject, tuple(parts))
    if len(parts) == 1:
        p = parts[0]
        return Decision("allow", p.reason, tool, p.rule, p.source, subject)
    rules = sorted({p.rule for p in parts if p.rule})
    return Decision("allow", f"all {len(parts)} parts allowed", tool,
                    ", ".join(rules) or None, "compound", subject, tuple(parts))


def _tool_matches(rule_tool: str, name: str) -> bool:
    rule_tool = canonical_tool(rule_tool)
    if rule_tool == name or rule_tool == "*":
        return True
    if rule_tool.startswith("mcp__") and name.startswith("mcp__"):
        if rule_tool.count("__") == 1 and name.startswith(rule_tool + "__"):
            return True  # mcp__server = every tool of that server
        return "*" in rule_tool and fnmatch.fnmatchcase(name, rule_tool)
    return False


def _domain_matches(rule: Rule, host: str) -> bool:
    spec = (rule.specifier or "").strip()
    if not spec.lower().startswith("domain:"):
        return False
    want = spec[7:].strip().lower()
    if want.startswith("*."):
        return host.endswith(want[1:])
    return host == want


def _agent_matches(rule: Rule, target: str) -> bool:
    if not target or rule.specifier is None:
        return False
    return any(fnmatch.fnmatchcase(target, n.strip())
               for n in rule.specifier.split(",") if n.strip())
