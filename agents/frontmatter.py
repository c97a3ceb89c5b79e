"""Split a Markdown file into YAML frontmatter and body, keeping line numbers.

Claude Code's parser (as of v2.1.x) tries strict YAML first and, when that fails, retries
after double-quoting top-level ``key: value`` lines whose value holds YAML indicator
characters (``description: Use when: X`` is invalid YAML but a common agent file). We do
the same so that every file Claude Code loads also loads here, and we record that the
lenient path was needed so ``agents validate`` can warn about it.

Line numbers are 1-based *file* lines: YAML errors and per-key positions are shifted by
the opening ``---`` line, so an error points at the line the user must edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.errors import DefinitionError

_FENCE = re.compile(r"^---[ \t]*$")
# Same indicator set as Claude Code's retry: flow/anchor/tag/block/comment/reserved chars,
# and ": " (a nested mapping) - but not a bare ":" so URLs and times stay unquoted.
_NEEDS_QUOTES = re.compile(r"[{}\[\]*&#!|>%@`]|: ")
_SIMPLE_KV = re.compile(r"^([A-Za-z_-]+):[ \t]+(.+)$")


@dataclass
class Frontmatter:
    """The parsed head of a file: mapping, body, where each key was, how it was parsed."""

    data: dict[str, Any]
    body: str
    body_line: int  # file line where the body starts
    key_lines: dict[str, int] = field(default_factory=dict)
    lenient: str | None = None  # the strict YAML error if the lenient retry was needed


def has_frontmatter(text: str) -> bool:
    """True when the first line is a ``---`` fence (what discovery looks at)."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    return bool(_FENCE.match(first))


def split_frontmatter(text: str, path: Path | None = None) -> tuple[str, str, int]:
    """Return (yaml_text, body, body_line). The YAML text starts at file line 2."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if not lines or not _FENCE.match(lines[0]):
        first = lines[0].strip()[:60] if lines else ""
        raise DefinitionError(
            "no YAML frontmatter: a subagent file starts with a '---' line, then "
            "name/description fields, then '---'"
            + (f" (this file starts with {first!r})" if first else " (this file is empty)"),
            path, 1)
    for idx in range(1, len(lines)):
        if _FENCE.match(lines[idx]):
            return "\n".join(lines[1:idx]), "\n".join(lines[idx + 1:]), idx + 2
    raise DefinitionError("frontmatter opened by '---' on line 1 is never closed by a '---' line",
                          path, 1)


def _quote_problem_values(yaml_text: str) -> str:
    out = []
    for line in yaml_text.split("\n"):
        m = _SIMPLE_KV.match(line)
        if m:
            key, value = m.group(1), m.group(2)
            quoted = (value[0] == value[-1] and value[0] in "'\"" and len(value) > 1)
            if not quoted and _NEEDS_QUOTES.search(value):
                escaped = value.replace("\\", "\\\\").replace('"', '\\"')
                line = f'{key}: "{escaped}"'
        out.append(line)
    return "\n".join(out)


def _load(yaml_text: str) -> tuple[Any, dict[str, int]]:
    """Parse one YAML document; also return the 0-based YAML line of each top-level key."""
    import yaml

    loader = yaml.SafeLoader(yaml_text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    key_lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_lines.setdefault(str(key_node.value), key_node.start_mark.line)
    return data, key_lines


def parse_frontmatter(text: str, path: Path | None = None) -> Frontmatter:
    """Parse the frontmatter of ``text``; raise DefinitionError naming file and line."""
    import yaml

    yaml_text, body, body_line = split_frontmatter(text, path)
    lenient: str | None = None
    try:
        data, key_lines = _load(yaml_text)
    except yaml.YAMLError as strict_err:
        mark = (getattr(strict_err, "problem_mark", None)
                or getattr(strict_err, "context_mark", None))
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(strict_err, "problem", None) or str(strict_err).split("\n")[0]
        try:
            data, key_lines = _load(_quote_problem_values(yaml_text))
        except yaml.YAMLError:
            raise DefinitionError(f"malformed YAML frontmatter: {problem}", path, line) from None
        lenient = f"line {line}: {problem}"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DefinitionError(
            f"frontmatter must be a mapping of fields, got a YAML {type(data).__name__}", path, 2)
    return Frontmatter(data={str(k): v for k, v in data.items()}, body=body, body_line=body_line,
                       key_lines={k: v + 2 for k, v in key_lines.items()}, lenient=lenient)
