"""Find subagent files and decide which definition wins for each name.

Search order, first wins for a name (Claude Code: project beats user):

1. ``<root>/.claude/agents/`` (scope ``project``) - the directory Claude Code itself reads,
   so a file there is what both tools run; it beats ``agents/``.
2. ``<root>/agents/`` (scope ``project-agents``) - the plugin-style layout. In this
   repository that is also our Python package, so only ``*.md`` files are read, and files
   without frontmatter (a README) are skipped silently.
3. ``<home>/.claude/agents/`` (scope ``user``).

Each directory is scanned recursively (identity comes only from ``name``, never the file
name); inside one directory the first file in sorted path order wins. The same physical
file reached twice (a symlinked home) is read once. Losers are kept in
``AgentRegistry.shadowed``; files that are not definitions in ``AgentRegistry.skipped``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agents.definition import AgentDefinition, Problem, load_definition
from agents.errors import AgentNotFound, DefinitionError
from agents.frontmatter import has_frontmatter

SKIP_DIRS = frozenset({"__pycache__", ".git", "node_modules", ".venv", ".mypy_cache",
                       ".pytest_cache", ".ruff_cache"})


@dataclass(frozen=True)
class Shadowed:
    definition: AgentDefinition
    by: AgentDefinition


@dataclass(frozen=True)
class Skipped:
    """A ``*.md`` file discovery did not load, and why."""

    path: Path
    scope: str
    error: DefinitionError
    #: True for files that do not claim to be agents (no frontmatter, or no ``name``):
    #: Claude Code treats them as documentation; ``validate`` still reports them.
    documentation: bool


@dataclass
class AgentRegistry:
    """The definitions in effect for one project root and home."""

    root: Path
    definitions: dict[str, AgentDefinition] = field(default_factory=dict)
    shadowed: list[Shadowed] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    directories: list[tuple[str, Path]] = field(default_factory=list)

    def get(self, name: str) -> AgentDefinition:
        try:
            return self.definitions[name]
        except KeyError:
            known = ", ".join(sorted(self.definitions)) or "none"
            where = ", ".join(str(d) for _, d in self.directories)
            raise AgentNotFound(f"no subagent named {name!r} (known: {known}; searched {where})"
                                ) from None

    def shadowed_by(self, name: str) -> list[AgentDefinition]:
        return [s.definition for s in self.shadowed if s.definition.name == name]

    def names(self) -> list[str]:
        return sorted(self.definitions)

    def __iter__(self) -> Iterator[AgentDefinition]:
        return iter(self.definitions[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.definitions)

    def __contains__(self, name: object) -> bool:
        return name in self.definitions

    def problems(self) -> list[Problem]:
        """Everything ``validate`` reports for the discovered files, in path order."""
        out: list[Problem] = []
        for sk in self.skipped:
            out.append(Problem(path=sk.path, line=sk.error.line, severity="error",
                               message=sk.error.message))
        for d in self.definitions.values():
            out += d.problems
        for s in self.shadowed:
            out += s.definition.problems
            if s.definition.scope == s.by.scope:
                out.append(Problem(
                    path=s.definition.source, line=s.definition.line_of("name"),
                    severity="warning", message=f"duplicate name {s.definition.name!r}: "
                    f"{s.by.source} wins (first in path order)"))
        return sorted(out, key=lambda p: (str(p.path), p.line or 0))


def search_dirs(root: Path, home: Path | None = None) -> list[tuple[str, Path]]:
    home = Path.home() if home is None else home
    return [("project", root / ".claude" / "agents"), ("project-agents", root / "agents"),
            ("user", home / ".claude" / "agents")]


def markdown_files(directory: Path) -> list[Path]:
    """``*.md`` files under ``directory`` (recursive, sorted), skipping tool/cache dirs."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.rglob("*.md"):
        rel = path.relative_to(directory).parts[:-1]
        if any(part in SKIP_DIRS for part in rel) or not path.is_file():
            continue
        found.append(path)
    return sorted(found)


def load_agents(root: Path, home: Path | None = None, *,
                model_aliases: frozenset[str] = frozenset()) -> AgentRegistry:
    """Discover and load every subagent for ``root``; ``home=None`` means ``Path.home()``."""
    reg = AgentRegistry(root=root, directories=search_dirs(root, home))
    seen_files: set[tuple[int, int]] = set()
    for scope, directory in reg.directories:
        for path in markdown_files(directory):
            try:
                st = path.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen_files:
                continue
            seen_files.add((st.st_dev, st.st_ino))
            try:
                head = path.read_bytes()[:4096].decode("utf-8", "replace")
            except OSError as exc:
                reg.skipped.append(Skipped(path, scope, DefinitionError(
                    f"cannot read: {exc.strerror or exc}", path), False))
                continue
            if not has_frontmatter(head):
                reg.skipped.append(Skipped(path, scope, DefinitionError(
                    "no YAML frontmatter: not a subagent file (skipped by discovery)", path, 1),
                    True))
                continue
            try:
                definition = load_definition(path, scope=scope, model_aliases=model_aliases)
            except DefinitionError as exc:
                doc = exc.message.startswith("missing 'name'")
                reg.skipped.append(Skipped(path, scope, exc, doc))
                continue
            winner = reg.definitions.get(definition.name)
            if winner is None:
                reg.definitions[definition.name] = definition
            else:
                reg.shadowed.append(Shadowed(definition, winner))
    return reg


def validate_paths(paths: list[Path], *, model_aliases: frozenset[str] = frozenset()
                   ) -> tuple[list[AgentDefinition], list[Problem]]:
    """Load explicit files (directories are expanded to their ``*.md``); report everything."""
    loaded: list[AgentDefinition] = []
    problems: list[Problem] = []
    for target in paths:
        files = markdown_files(target) if target.is_dir() else [target]
        if target.is_dir() and not files:
            problems.append(Problem(path=target, severity="error",
                                    message="no *.md files in this directory"))
        for path in files:
            if not path.exists():
                problems.append(Problem(path=path, severity="error", message="no such file"))
                continue
            try:
                definition = load_definition(path, scope="path", model_aliases=model_aliases)
            except DefinitionError as exc:
                problems.append(Problem(path=path, line=exc.line, severity="error",
                                        message=exc.message))
                continue
            loaded.append(definition)
            problems += definition.problems
    return loaded, problems
