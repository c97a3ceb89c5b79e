"""YAML task files -> tasks.

Format (docs/backlog.md; example: examples/tasks/health.yaml)::

    defaults:                 # optional: applied to every task that does not set the key
      agent: backend-implementer
      priority: 2
      labels: [health]
    tasks:                    # required (or the file is just this list)
      - id: health.endpoint   # required, unique; becomes stream task-health.endpoint
        title: Add /health    # required
        prompt: |             # optional; defaults to the title
          ...
        agent: reviewer       # optional; null/absent = the lead routes it
        depends_on: [other]   # optional; ids in this file or already in the backlog
        priority: 1           # optional; lower runs first (default 2)
        acceptance_criteria: ["GET /health returns 200"]
        labels: [api]

Every entry is validated (pydantic, unknown keys refused) before anything is appended;
errors name the file, the key path (``tasks[2].priority``) and its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.backlog import DEFAULT_PRIORITY, TaskSpec, TaskValidationError, task_id_problem


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class TaskDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str | None = None
    priority: int = DEFAULT_PRIORITY
    labels: list[str] = Field(default_factory=list)

    _list = field_validator("labels", mode="before")(_as_list)


class TaskEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str = Field(min_length=1)
    prompt: str | None = None
    agent: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    priority: int | None = None
    acceptance_criteria: list[str] = Field(default_factory=list)
    labels: list[str] | None = None

    _lists = field_validator("depends_on", "acceptance_criteria", "labels",
                             mode="before")(_as_list)

    @field_validator("id")
    @classmethod
    def _check_id(cls, v: str) -> str:
        problem = task_id_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: TaskDefaults = Field(default_factory=TaskDefaults)
    tasks: list[dict[str, Any]]


def _line_map(text: str) -> dict[tuple[str | int, ...], int]:
    """Key path -> 1-based line, from the YAML node tree (for error messages)."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                k = key.value if isinstance(key, yaml.ScalarNode) else str(key)
                lines[(*path, k)] = key.start_mark.line + 1
                walk(value, (*path, k))
                lines[(*path, k)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _key(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _where(name: str, lines: dict[tuple[str | int, ...], int],
           path: tuple[str | int, ...]) -> str:
    probe = path
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    return f"{name}:{line}: {_key(path)}" if line else f"{name}: {_key(path)}"


def _errors(exc: ValidationError, name: str, lines: dict[tuple[str | int, ...], int],
            prefix: tuple[str | int, ...]) -> list[str]:
    out = []
    for err in exc.errors():
        path = (*prefix, *err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(f"{_where(name, lines, path)}: {msg}")
    return out


def yaml_specs(text: str, path: Path) -> list[TaskSpec]:
    """Validate a whole task file; raise ``TaskValidationError`` listing every problem."""
    name = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TaskValidationError([f"{where}: invalid YAML: {problem}"]) from None
    lines = _line_map(text)
    prefix: tuple[str | int, ...] = ()
    if isinstance(data, list):
        data = {"tasks": data}
        lines = {("tasks", *k): v for k, v in lines.items()}
    if not isinstance(data, dict):
        raise TaskValidationError([f"{name}: expected a mapping with 'tasks:' (or a list of "
                                   f"tasks), got {type(data).__name__}"])
    try:
        doc = TaskFile.model_validate(data)
    except ValidationError as exc:
        raise TaskValidationError(_errors(exc, name, lines, prefix)) from None
    if not doc.tasks:
        raise TaskValidationError([f"{name}: 'tasks' is empty: nothing to import"])
    problems: list[str] = []
    specs: list[TaskSpec] = []
    for i, raw in enumerate(doc.tasks):
        try:
            entry = TaskEntry.model_validate(raw)
        except ValidationError as exc:
            problems += _errors(exc, name, lines, ("tasks", i))
            continue
        labels = entry.labels if entry.labels is not None else doc.defaults.labels
        specs.append(TaskSpec(
            id=entry.id, title=entry.title, prompt=entry.prompt or entry.title,
            agent=entry.agent if "agent" in raw else doc.defaults.agent,
            depends_on=tuple(entry.depends_on),
            priority=entry.priority if entry.priority is not None else doc.defaults.priority,
            acceptance_criteria=tuple(entry.acceptance_criteria), labels=tuple(labels),
            source={"kind": "yaml", "file": name, "key": f"tasks[{i}]",
                    "line": lines.get(("tasks", i))},
            origin=_where(name, lines, ("tasks", i))))
    if problems:
        raise TaskValidationError(problems)
    return specs
