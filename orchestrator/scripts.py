"""Which scripted model turns each task of a run gets (``orchestrail run --provider script``).

A script file (``agents/providers/script.py``) describes one session. A run has many, so
``--script`` accepts three shapes, checked for every task before the run starts:

* a **directory**: ``<task-id>.yaml`` (or ``.yml``) for each task, else ``<agent>.yaml``
  for every task of that agent, else ``default.yaml``;
* a **file with a ``tasks:`` mapping**: one section per task id (each section is a script:
  a list of turns, or a mapping with ``turns``, ``model``, ``usage``); a ``default:``
  section serves tasks without their own; top-level ``model``/``usage`` are defaults for
  every section;
* a **plain script file**: every task gets a fresh copy of the same turns.

A task keeps one provider for the whole run: a retry continues with the turns the
failed attempt did not use, so a script can say "fail transiently, then succeed" (an
``error:`` turn, then the turns of the next attempt).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.backlog import TaskState

SUFFIXES = (".yaml", ".yml")


class ScriptSetError(ValueError):
    """A task has no script, or a script is malformed; the message names file and task."""


class ScriptSet:
    """Resolves and validates the script of every task; makes providers on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sections: dict[str, Any] | None = None
        self.defaults: dict[str, Any] = {}
        self._providers: dict[str, Any] = {}
        self._files: dict[str, Any] = {}  # path -> parsed YAML (parsed once per run)
        if path.is_dir():
            return
        if not path.is_file():
            raise ScriptSetError(f"--script {path}: no such file or directory")
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ScriptSetError(f"{path}: cannot read script: {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ScriptSetError(f"{path}{line}: {getattr(exc, 'problem', None) or exc}"
                                 ) from None
        if isinstance(data, dict) and "tasks" in data:
            tasks = data["tasks"]
            extra = set(data) - {"tasks", "default", "model", "usage"}
            if not isinstance(tasks, dict) or extra:
                unknown = f"; unknown keys {sorted(extra)}" if extra else ""
                raise ScriptSetError(f"{path}: a per-task script is a mapping with 'tasks: "
                                     "{<task-id>: <script>}' (and optional default, model, "
                                     f"usage){unknown}")
            self.sections = {str(k): v for k, v in tasks.items()}
            if data.get("default") is not None:
                self.sections.setdefault("*default*", data["default"])
            self.defaults = {k: data[k] for k in ("model", "usage") if k in data}

    def source_for(self, task: TaskState) -> tuple[str, Any]:
        """``(where, script)``: where = a file path or ``file: tasks.<id>``; script = the
        parsed section (per-task file) or None (read the file)."""
        if self.path.is_dir():
            names = [task.id, *([task.agent] if task.agent else []), "default"]
            for name in names:
                for suffix in SUFFIXES:
                    candidate = self.path / f"{name}{suffix}"
                    if candidate.is_file():
                        return str(candidate), None
            raise ScriptSetError(f"--script {self.path}: no script for task {task.id!r} "
                                 f"(looked for {', '.join(n + '.yaml' for n in names)})")
        if self.sections is None:
            return str(self.path), None
        key = task.id if task.id in self.sections else "*default*"
        if key not in self.sections:
            raise ScriptSetError(f"{self.path}: no section for task {task.id!r} under tasks: "
                                 "(and no default:)")
        section = self.sections[key]
        if isinstance(section, list):
            section = {"turns": section}
        if isinstance(section, dict):
            section = {**self.defaults, **section}
        where = f"{self.path}: tasks.{task.id}" if key != "*default*" else \
            f"{self.path}: default"
        return where, section

    def provider(self, task: TaskState) -> Any:
        """The task's provider (the same one for every attempt of this run)."""
        if task.id not in self._providers:
            self._providers[task.id] = self._load(task)
        return self._providers[task.id]

    def _load(self, task: TaskState) -> Any:
        from agents.providers.script import ScriptProvider

        where, section = self.source_for(task)
        if section is None:
            if where not in self._files:
                ScriptProvider(where)  # validates, with errors naming the file and turn
                self._files[where] = _read_yaml(Path(where))
            section = self._files[where]
        return section_provider(section, where)

    def check(self, tasks: list[TaskState]) -> list[str]:
        """One line per task whose script is missing or malformed."""
        from agents.providers.base import ProviderError

        problems: list[str] = []
        for task in tasks:
            try:
                self._load(task)
            except (ScriptSetError, ProviderError) as exc:
                problems.append(str(exc))
        return problems


def _read_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def section_provider(section: Any, where: str) -> Any:
    """A ``ScriptProvider`` for a parsed script (a list of turns, or a mapping with
    ``turns``); its errors name ``where`` (``file: tasks.<id>``). Also serves the lead's
    and the reviewer's sections (``orchestrator.rolescripts``)."""
    from agents.providers.script import ScriptError, ScriptProvider

    try:
        provider = ScriptProvider(turns=section)
    except ScriptError as exc:
        raise ScriptError(str(exc).replace("<script>", where, 1)) from None
    provider.source = where
    return provider
