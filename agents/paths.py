"""Workspace confinement and Claude Code's gitignore-style path patterns.

Confinement resolves a path the way the kernel will: every existing component with its
symlinks followed (``os.path.realpath``), ``..`` applied after resolution, and a
not-yet-existing tail appended to its deepest existing parent. A path is inside the
workspace when that real path is the workspace's real path or below it. So ``../x``, an
absolute path elsewhere, a symlink inside the workspace pointing outside (even a dangling
one, whose target would be created outside) and ``new/../../x`` are all outside.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path


def resolve(path: str, cwd: Path, home: Path) -> Path:
    """Absolute real path of ``path`` (relative to ``cwd``; ``~`` = ``home``)."""
    if "\x00" in path:
        raise ValueError("NUL byte in path")
    if path == "~" or path.startswith("~/"):
        path = str(home) + path[1:]
    joined = os.path.join(cwd, path)
    return Path(os.path.realpath(joined))


def is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = glob[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


@lru_cache(maxsize=1024)
def _compile(pattern: str, project_root: str, cwd: str, home: str) -> re.Pattern[str]:
    if pattern.startswith("//"):
        absolute = pattern[1:]
    elif pattern == "~" or pattern.startswith("~/"):
        absolute = home + pattern[1:]
    elif pattern.startswith("/"):
        absolute = project_root.rstrip("/") + pattern
    elif pattern.startswith("./"):
        absolute = cwd.rstrip("/") + pattern[1:]
    elif "/" in pattern.rstrip("/"):
        absolute = cwd.rstrip("/") + "/" + pattern
    else:  # no slash: like .gitignore, matches that name at any depth below cwd
        absolute = cwd.rstrip("/") + "/**/" + pattern
    absolute = absolute.rstrip("/") or "/"
    # A matching directory also matches everything below it (gitignore semantics).
    return re.compile("^" + _glob_to_regex(absolute) + "(?:/.*)?$")


def path_matches(pattern: str, path: Path, *, project_root: Path, cwd: Path, home: Path) -> bool:
    """Does a ``Read(...)``/``Edit(...)`` specifier match this absolute path?"""
    return bool(_compile(pattern, str(project_root), str(cwd), str(home)).match(str(path)))
