"""Glob and Grep, in pure Python (no ripgrep dependency), confined to the workspace.

Both walk the tree without following symlinked directories and skip any file whose real
path is outside the workspace, so a symlink planted in the workspace cannot be used to
list or search the rest of the filesystem. ``.git`` and other VCS directories are
skipped, as ripgrep does by default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from agents.paths import is_within
from agents.tools.base import Tool, ToolContext, ToolError, ToolResult
from agents.tools.confine import confine, relative

SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv"})
GLOB_LIMIT = 1000
GREP_FILE_BYTES = 5_000_000


def _walk(base: Path, root: Path) -> Iterator[Path]:
    """Files under ``base`` whose real path stays inside ``root`` (symlinks not followed)."""
    if base.is_file():
        yield base
        return
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_symlink():
                real = Path(os.path.realpath(p))
                if not is_within(real, root) or not real.is_file():
                    continue
            yield p


def _glob_to_regex(glob: str) -> str:
    """``**/`` any depth, ``*`` within a segment, ``?`` one character, ``[...]`` a class."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and glob.find("]", i + 1) != -1:
            end = glob.find("]", i + 1)
            body = glob[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    if pattern.startswith("/") or any(part == ".." for part in pattern.split("/")):
        raise ToolError(f"glob pattern {pattern!r} must be relative and must not contain '..'")
    pat = pattern if "/" in pattern else "**/" + pattern
    # {a,b} alternatives, as Claude Code's Glob accepts (*.{ts,tsx})
    regex = _glob_to_regex(pat)
    regex = re.sub(r"\\\{([^{}]*)\\\}",
                   lambda m: "(?:" + "|".join(m.group(1).split(",")) + ")", regex)
    try:
        return re.compile("^" + regex + "$")
    except re.error as exc:
        raise ToolError(f"invalid glob pattern {pattern!r}: {exc}") from None


class Glob(Tool):
    name: ClassVar[str] = "Glob"
    description: ClassVar[str] = (
        "Find files by glob pattern (e.g. **/*.py, src/*.{ts,tsx}). Returns paths relative "
        "to the workspace, most recently modified first.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "minLength": 1, "description": "Glob pattern"},
            "path": {"type": "string", "description": "Directory to search (default: workspace)"},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        root = ctx.workspace
        base = confine(data.get("path") or ".", root)
        if not base.is_dir():
            raise ToolError(f"{relative(base, root)}: not a directory")
        regex = _pattern_regex(data["pattern"])
        hits = [p for p in _walk(base, root) if regex.match(p.relative_to(base).as_posix())]
        hits.sort(key=lambda p: (-p.lstat().st_mtime, str(p)))
        if not hits:
            return ToolResult("No files found")
        lines = [relative(p, root) for p in hits[:GLOB_LIMIT]]
        if len(hits) > GLOB_LIMIT:
            lines.append(f"[{len(hits) - GLOB_LIMIT} more files not shown]")
        return ToolResult("\n".join(lines))


class Grep(Tool):
    name: ClassVar[str] = "Grep"
    description: ClassVar[str] = (
        "Search file contents with a regular expression. output_mode: files_with_matches "
        "(default), content (matching lines) or count.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "minLength": 1, "description": "Regular expression"},
            "path": {"type": "string", "description": "File or directory (default: workspace)"},
            "glob": {"type": "string", "description": "Only files matching this glob"},
            "output_mode": {"type": "string",
                            "enum": ["content", "files_with_matches", "count"]},
            "-i": {"type": "boolean", "description": "Case insensitive"},
            "-n": {"type": "boolean", "description": "Line numbers (content mode)"},
            "-A": {"type": "integer", "minimum": 0},
            "-B": {"type": "integer", "minimum": 0},
            "-C": {"type": "integer", "minimum": 0},
            "multiline": {"type": "boolean"},
            "head_limit": {"type": "integer", "minimum": 1},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        root = ctx.workspace
        base = confine(data.get("path") or ".", root)
        if not base.exists():
            raise ToolError(f"{relative(base, root)}: does not exist")
        flags = re.IGNORECASE if data.get("-i") else 0
        if data.get("multiline"):
            flags |= re.DOTALL | re.MULTILINE
        try:
            regex = re.compile(data["pattern"], flags)
        except re.error as exc:
            raise ToolError(f"invalid regular expression {data['pattern']!r}: {exc}") from None
        only = _pattern_regex(data["glob"]) if data.get("glob") else None
        mode = data.get("output_mode", "files_with_matches")
        after = int(data.get("-A", data.get("-C", 0)))
        before = int(data.get("-B", data.get("-C", 0)))
        numbers = bool(data.get("-n", True))
        limit = int(data.get("head_limit", 0)) or None
        out: list[str] = []
        for path in _walk(base, root):
            rel_base = path.relative_to(base).as_posix() if base.is_dir() else path.name
            if only is not None and not only.match(rel_base):
                continue
            try:
                if path.stat().st_size > GREP_FILE_BYTES:
                    continue
                raw = path.read_bytes()
            except OSError:
                continue
            if b"\x00" in raw[:8192]:
                continue  # binary
            text = raw.decode("utf-8", errors="replace")
            rel = relative(path, root)
            if mode == "files_with_matches":
                if regex.search(text):
                    out.append(rel)
            elif mode == "count":
                n = sum(1 for _ in regex.finditer(text))
                if n:
                    out.append(f"{rel}:{n}")
            else:
                lines = text.splitlines()
                shown: set[int] = set()
                for i, line in enumerate(lines):
                    if regex.search(line):
                        shown.update(range(max(0, i - before), min(len(lines), i + after + 1)))
                for i in sorted(shown):
                    out.append(f"{rel}:{i + 1}:{lines[i]}" if numbers else f"{rel}:{lines[i]}")
            if limit and len(out) >= limit:
                out = out[:limit]
                break
        return ToolResult("\n".join(out) if out else "No matches found")
