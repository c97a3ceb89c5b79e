"""One workspace per task attempt: a git worktree when the project is a git repository,
else a copy of the project directory.

Why not let every agent work in the project itself: parallel tasks would edit the same
files, a failed attempt would leave half a change behind for the next one, and the patch
a session produced could not be told apart from the others'. A worktree is cheap (it
shares the object store), gives each task its own branch (``orchestrail/<run>/<task>``)
that the user can inspect or merge, and makes the session's change a plain ``git diff``.

Layout: ``<project>/.orchestrail/worktrees/<run>/<task>``. A task's worktree starts at the
run's base commit with the branches of its dependencies merged in, so a reviewer task
sees the implementer's work. After the session, ``collect`` commits what the agent left on
the task's branch and returns the patch (recorded as ``workspace.diff``).

``mode="none"`` makes every task work in the project directory itself (serial runs only;
no isolation, no per-task diff beyond what git shows).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Mode = Literal["auto", "worktree", "copy", "none"]
MODES: tuple[str, ...] = ("auto", "worktree", "copy", "none")
ROOT = Path(".orchestrail") / "worktrees"
#: Characters of a patch kept in the ``workspace.diff`` event (its sha256 and length are
#: always recorded; the branch holds the whole change).
PATCH_CAP = 200_000
_GIT_ENV = {"GIT_AUTHOR_NAME": "orchestrail", "GIT_AUTHOR_EMAIL": "orchestrail@localhost",
            "GIT_COMMITTER_NAME": "orchestrail", "GIT_COMMITTER_EMAIL": "orchestrail@localhost",
            "GIT_TERMINAL_PROMPT": "0"}
_COPY_IGNORE = (".orchestrail", ".git", "__pycache__", ".venv", "node_modules")


class WorkspaceError(Exception):
    """A workspace cannot be made or read; the message names the directory and why."""


def ref_part(text: str) -> str:
    """``text`` made safe as one component of a git branch name (``:``, ``..``, ``@{``,
    a trailing ``.lock`` are not allowed in refs)."""
    out = re.sub(r"[^A-Za-z0-9._+=-]", "-", text)
    out = re.sub(r"\.{2,}", ".", out).strip(".-") or "x"
    return out[:-5] + "-lock" if out.endswith(".lock") else out


async def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run git; a failure is a ``WorkspaceError`` quoting git's own message."""
    env = {**os.environ, **_GIT_ENV}
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as exc:  # no git binary, or cwd gone
        raise WorkspaceError(f"cannot run git in {cwd}: {exc.strerror or exc}") from None
    out, err = await proc.communicate()
    if check and proc.returncode != 0:
        msg = err.decode(errors="replace").strip() or out.decode(errors="replace").strip()
        raise WorkspaceError(f"git {' '.join(args[:3])} in {cwd}: {msg}")
    return out.decode(errors="replace")


async def git_info(project: Path) -> dict[str, Any] | None:
    """Commit, branch and status of the project (None when it is not a git repository)."""
    try:
        top = (await git(project, "rev-parse", "--show-toplevel")).strip()
    except WorkspaceError:
        return None
    head = (await git(project, "rev-parse", "--verify", "-q", "HEAD", check=False)).strip()
    branch = (await git(project, "branch", "--show-current", check=False)).strip()
    status = await git(project, "status", "--porcelain", "--untracked-files=normal",
                       check=False)
    lines = [ln for ln in status.splitlines() if not ln[3:].startswith(".orchestrail")]
    return {"toplevel": top, "commit": head or None, "branch": branch or None,
            "dirty": bool(lines), "status": lines[:50], "status_lines": len(lines)}


def check_writable(project: Path) -> Path:
    """The worktree root, created if needed; a clear error when it cannot be written."""
    root = project / ROOT
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"workspace directory {root} is not writable: it is a file")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise WorkspaceError(f"workspace directory {root} is not writable: "
                             f"{exc.strerror or exc}") from None
    return root


@dataclass
class Workspace:
    """Where one task attempt runs, and how to get its change back."""

    path: Path
    kind: str  # worktree | copy | none
    project: Path
    task_id: str
    branch: str | None = None
    base: str | None = None  # commit the worktree started from (after dependency merges)
    merged: list[str] = field(default_factory=list)
    snapshot: dict[str, str] = field(default_factory=dict)  # copy mode: path -> sha256
    source: Path | None = None  # copy mode: the directory the copy was made from

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "branch": self.branch,
                "base": self.base, "merged": self.merged}

    async def collect(self, message: str) -> dict[str, Any]:
        """Commit what the session left (worktree) and describe the change:
        ``{files: [{path, status}], patch, patch_sha256, patch_chars, truncated, commit}``."""
        if self.kind == "worktree":
            return await self._collect_git(message)
        if self.kind == "copy":
            return self._collect_copy()
        return await self._collect_none()

    async def _collect_git(self, message: str) -> dict[str, Any]:
        await git(self.path, "add", "-A")
        names = await git(self.path, "diff", "--cached", "--name-status", "--no-renames")
        patch = await git(self.path, "diff", "--cached", "--no-renames", "--binary")
        commit = None
        if names.strip():
            await git(self.path, "commit", "-q", "--no-verify", "-m", message)
            commit = (await git(self.path, "rev-parse", "HEAD")).strip()
        files = [{"status": ln.split("\t", 1)[0], "path": ln.split("\t", 1)[1]}
                 for ln in names.splitlines() if "\t" in ln]
        return _described(files, patch, commit)

    async def _collect_none(self) -> dict[str, Any]:
        info = await git_info(self.project)
        if info is None:
            return _described([], "", None)
        patch = await git(self.project, "diff", "HEAD", check=False)
        files = [{"status": ln[:2].strip(), "path": ln[3:]} for ln in info["status"]]
        return _described(files, patch, None)

    def _collect_copy(self) -> dict[str, Any]:
        after = _hash_tree(self.path)
        files: list[dict[str, str]] = []
        chunks: list[str] = []
        for rel in sorted(set(self.snapshot) | set(after)):
            old, new = self.snapshot.get(rel), after.get(rel)
            if old == new:
                continue
            status = "A" if old is None else "D" if new is None else "M"
            files.append({"status": status, "path": rel})
            before_text = _text((self.source or self.project) / rel) if old else []
            after_text = _text(self.path / rel) if new is not None else []
            chunks.append("".join(difflib.unified_diff(
                before_text, after_text, f"a/{rel}" if old else "/dev/null",
                f"b/{rel}" if new else "/dev/null")))
        return _described(files, "".join(chunks), None)


def _described(files: list[dict[str, str]], patch: str, commit: str | None) -> dict[str, Any]:
    return {"files": files, "patch": patch[:PATCH_CAP], "truncated": len(patch) > PATCH_CAP,
            "patch_sha256": hashlib.sha256(patch.encode()).hexdigest(),
            "patch_chars": len(patch), "commit": commit}


def _text(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return ["<binary or unreadable>\n"]


def _hash_tree(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _COPY_IGNORE]
        for name in filenames:
            p = Path(dirpath) / name
            try:
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                continue
    return out


class Workspaces:
    """Makes the workspaces of one run. ``mode``: ``auto`` (worktree in a git repository
    with at least one commit, else copy), ``worktree``, ``copy`` or ``none``."""

    def __init__(self, project: Path, run_id: str, mode: Mode = "auto",
                 base_commit: str | None = None) -> None:
        self.project = project
        self.run_id = run_id
        self.requested = mode
        self.mode: str = mode
        self.base_commit = base_commit
        self.git = False  # the project is a git repository with a commit
        self._lock = asyncio.Lock()  # git worktree add/merge touch shared refs

    async def setup(self) -> None:
        """Decide the mode and check that the workspace root can be written."""
        info = await git_info(self.project) if self.mode != "copy" else None
        self.git = bool(info and info["commit"])
        if self.mode == "none":
            if not os.access(self.project, os.W_OK):
                raise WorkspaceError(f"project directory {self.project} is not writable")
            return
        if self.mode == "worktree" and (info is None or not info["commit"]):
            raise WorkspaceError(f"{self.project} is not a git repository with a commit; "
                                 "use --workspace copy (or none)")
        if self.mode == "auto":
            self.mode = "worktree" if info and info["commit"] else "copy"
        if self.mode == "worktree" and self.base_commit is None and info:
            self.base_commit = info["commit"]
        check_writable(self.project)

    def path_for(self, task_id: str) -> Path:
        return self.project / ROOT / self.run_id / task_id

    def branch_for(self, task_id: str) -> str:
        return f"orchestrail/{ref_part(self.run_id)}/{ref_part(task_id)}"

    async def prepare(self, task_id: str, depends_on: Sequence[str] = (), *,
                      fresh: bool = True) -> Workspace:
        """The workspace of ``task_id``. ``fresh``: start over when a previous attempt left
        one (a retry); ``fresh=False`` keeps it (``resume`` continues where it stopped)."""
        if self.mode == "none":
            return Workspace(self.project, "none", self.project, task_id)
        path = self.path_for(task_id)
        if self.mode == "copy":
            return await asyncio.to_thread(self._prepare_copy, task_id, path, depends_on, fresh)
        async with self._lock:
            try:
                return await self._prepare_worktree(task_id, path, depends_on, fresh)
            except OSError as exc:
                raise WorkspaceError(f"cannot make the worktree {path}: "
                                     f"{exc.strerror or exc}") from None

    async def _prepare_worktree(self, task_id: str, path: Path, depends_on: Sequence[str],
                                fresh: bool) -> Workspace:
        branch = self.branch_for(task_id)
        assert self.base_commit is not None
        if path.exists() and not fresh:
            base = (await git(path, "rev-parse", "HEAD")).strip()
            return Workspace(path, "worktree", self.project, task_id, branch, base)
        if path.exists():
            await git(self.project, "worktree", "remove", "--force", str(path))
        await git(self.project, "worktree", "prune")
        path.parent.mkdir(parents=True, exist_ok=True)
        await git(self.project, "worktree", "add", "-q", "-B", branch, str(path),
                  self.base_commit)
        merged: list[str] = []
        for dep in depends_on:
            dep_branch = self.branch_for(dep)
            exists = await git(self.project, "rev-parse", "--verify", "-q",
                               f"refs/heads/{dep_branch}", check=False)
            if not exists.strip():
                continue
            try:
                await git(path, "merge", "-q", "--no-edit", "--no-ff", dep_branch,
                          "-m", f"orchestrail: merge {dep} into {task_id}")
            except WorkspaceError as exc:
                await git(path, "merge", "--abort", check=False)
                raise WorkspaceError(f"task {task_id!r}: the work of its dependencies "
                                     f"conflicts ({exc})") from None
            merged.append(dep_branch)
        base = (await git(path, "rev-parse", "HEAD")).strip()
        return Workspace(path, "worktree", self.project, task_id, branch, base, merged)

    def _prepare_copy(self, task_id: str, path: Path, depends_on: Sequence[str],
                      fresh: bool) -> Workspace:
        if path.exists() and not fresh:
            return Workspace(path, "copy", self.project, task_id,
                             snapshot=_hash_tree(self.project), source=self.project)
        try:
            if path.exists():
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            # A single dependency's workspace is the starting point, so its work is seen.
            sources = [self.path_for(d) for d in depends_on if self.path_for(d).is_dir()]
            source = sources[0] if len(sources) == 1 else self.project
            shutil.copytree(source, path, symlinks=True,
                            ignore=shutil.ignore_patterns(*_COPY_IGNORE))
        except OSError as exc:
            raise WorkspaceError(f"cannot copy the project into {path}: "
                                 f"{exc.strerror or exc}") from None
        return Workspace(path, "copy", self.project, task_id, snapshot=_hash_tree(source),
                         source=source)
