"""Read, Write, Edit, MultiEdit: the file tools, confined to the workspace.

Input names and semantics follow Claude Code (``file_path``, ``offset``/``limit``,
``old_string``/``new_string``/``replace_all``, ``edits``). Writes are whole-file and
atomic (temp file + ``os.replace``), so a killed session never leaves a half-written file,
and every write reports the file's new SHA-256 for the trail. MultiEdit applies all its
edits to an in-memory copy first: either every edit applies or the file is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from agents.tools.base import FileTouched, Tool, ToolContext, ToolError, ToolResult, sha256_bytes
from agents.tools.confine import confine, relative

READ_DEFAULT_LIMIT = 2000
READ_LINE_CAP = 2000
MAX_FILE_BYTES = 50_000_000

_PATH = {"type": "string", "minLength": 1,
         "description": "Path of the file (relative to the workspace, or absolute inside it)"}


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise ToolError(f"{what}: file does not exist")
    if path.is_dir():
        raise ToolError(f"{what}: is a directory, not a file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ToolError(f"{what}: file is larger than {MAX_FILE_BYTES} bytes")
    return path.read_bytes().decode("utf-8", errors="replace")


def _write_atomic(path: Path, data: bytes, root: Path) -> FileTouched:
    existed = path.exists()
    if existed and path.is_dir():
        raise ToolError(f"{relative(path, root)}: is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if existed else None
    fd, tmp = tempfile.mkstemp(prefix=".orchestrail-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return FileTouched(relative(path, root), sha256_bytes(data), len(data),
                       "modified" if existed else "created")


class Read(Tool):
    name: ClassVar[str] = "Read"
    description: ClassVar[str] = (
        "Read a text file from the workspace. Returns lines numbered from 1 (cat -n style). "
        "Use offset (1-based line) and limit (default 2000 lines) for long files.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "file_path": _PATH,
            "offset": {"type": "integer", "minimum": 1, "description": "First line (1-based)"},
            "limit": {"type": "integer", "minimum": 1, "description": "Number of lines"},
        },
        "required": ["file_path"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        path = confine(data["file_path"], ctx.workspace)
        text = _read_text(path, relative(path, ctx.workspace))
        lines = text.splitlines()
        start = int(data.get("offset", 1)) - 1
        limit = int(data.get("limit", READ_DEFAULT_LIMIT))
        if not lines:
            return ToolResult("(the file is empty)")
        if start >= len(lines):
            raise ToolError(f"offset {start + 1} is past the end ({len(lines)} lines)")
        out = []
        for n, line in enumerate(lines[start:start + limit], start + 1):
            if len(line) > READ_LINE_CAP:
                line = line[:READ_LINE_CAP] + " [line truncated]"
            out.append(f"{n:6}\t{line}")
        return ToolResult("\n".join(out))


class Write(Tool):
    name: ClassVar[str] = "Write"
    description: ClassVar[str] = (
        "Write a file in the workspace, replacing it if it exists (parent directories are "
        "created).")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"file_path": _PATH,
                       "content": {"type": "string", "description": "The full new content"}},
        "required": ["file_path", "content"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        path = confine(data["file_path"], ctx.workspace)
        touched = _write_atomic(path, data["content"].encode(), ctx.workspace)
        return ToolResult(f"{touched.action} {touched.path} ({touched.bytes} bytes)",
                          files=[touched])


def apply_edit(text: str, old: str, new: str, replace_all: bool, where: str) -> str:
    """One Claude Code edit: ``old`` must occur exactly once unless ``replace_all``."""
    if old == new:
        raise ToolError(f"{where}: old_string and new_string are identical")
    if old == "":
        raise ToolError(f"{where}: old_string is empty (use Write to create a file)")
    count = text.count(old)
    if count == 0:
        raise ToolError(f"{where}: old_string not found in the file")
    if count > 1 and not replace_all:
        raise ToolError(f"{where}: old_string occurs {count} times; give more context to "
                        "make it unique, or set replace_all")
    return text.replace(old, new) if replace_all else text.replace(old, new, 1)


_EDIT_PROPS: dict[str, Any] = {
    "old_string": {"type": "string", "description": "Exact text to replace"},
    "new_string": {"type": "string", "description": "Replacement text"},
    "replace_all": {"type": "boolean", "description": "Replace every occurrence"},
}


class Edit(Tool):
    name: ClassVar[str] = "Edit"
    description: ClassVar[str] = (
        "Replace old_string with new_string in a file. old_string must match exactly once "
        "unless replace_all is true.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"file_path": _PATH, **_EDIT_PROPS},
        "required": ["file_path", "old_string", "new_string"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        path = confine(data["file_path"], ctx.workspace)
        rel = relative(path, ctx.workspace)
        text = apply_edit(_read_text(path, rel), data["old_string"], data["new_string"],
                          bool(data.get("replace_all", False)), rel)
        touched = _write_atomic(path, text.encode(), ctx.workspace)
        return ToolResult(f"edited {rel}", files=[touched])


class MultiEdit(Tool):
    name: ClassVar[str] = "MultiEdit"
    description: ClassVar[str] = (
        "Apply several edits to one file in order; either all apply or none does.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "file_path": _PATH,
            "edits": {
                "type": "array", "minItems": 1,
                "items": {"type": "object", "properties": dict(_EDIT_PROPS),
                          "required": ["old_string", "new_string"],
                          "additionalProperties": False},
            },
        },
        "required": ["file_path", "edits"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        path = confine(data["file_path"], ctx.workspace)
        rel = relative(path, ctx.workspace)
        text = _read_text(path, rel)
        for i, edit in enumerate(data["edits"]):
            text = apply_edit(text, edit["old_string"], edit["new_string"],
                              bool(edit.get("replace_all", False)), f"{rel} edit {i + 1}")
        touched = _write_atomic(path, text.encode(), ctx.workspace)
        return ToolResult(f"applied {len(data['edits'])} edits to {rel}", files=[touched])
