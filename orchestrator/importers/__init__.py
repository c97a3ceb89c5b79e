"""Turn files users already have into backlog tasks: YAML task files and story Markdown.

``load_tasks(path)`` picks the importer by extension (``.yaml``/``.yml`` or ``.md``/
``.markdown``), validates the whole file and returns specs without touching the store;
``Backlog.add`` then validates them against the backlog (dependencies, cycles, agents)
before the first append. Task and event ids are deterministic, so importing the same
file twice is an idempotent retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.backlog import TaskSpec, TaskValidationError


@dataclass
class LoadedTasks:
    specs: list[TaskSpec]
    #: Ids to mark completed on import (checked ``[x]`` story tasks).
    done: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    kind: str = "yaml"


def load_tasks(path: Path, *, sequential: bool = False,
               agent: str | None = None) -> LoadedTasks:
    """Read and validate a task file; raise ``TaskValidationError`` naming file and key."""
    from orchestrator.importers.text import read_user_text

    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".md", ".markdown"):
        raise TaskValidationError([f"{path}: unknown task file type {suffix or '(none)'!r}: "
                                   "use .yaml/.yml (task list) or .md (story)"])
    try:
        text, warnings = read_user_text(path)
    except OSError as exc:
        raise TaskValidationError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if suffix in (".md", ".markdown"):
        from orchestrator.importers.story import story_specs

        specs, done = story_specs(text, path, sequential=sequential, agent=agent)
        return LoadedTasks(specs, done, warnings, "story")
    from orchestrator.importers.yaml_tasks import yaml_specs

    specs = yaml_specs(text, path)
    if agent is not None:
        specs = [s if s.agent else s.model_copy(update={"agent": agent}) for s in specs]
    if sequential:
        chained: list[TaskSpec] = []
        for i, s in enumerate(specs):
            prev = specs[i - 1].id if i else None
            if prev and prev not in s.depends_on:
                s = s.model_copy(update={"depends_on": (*s.depends_on, prev)})
            chained.append(s)
        specs = chained
    return LoadedTasks(specs, set(), warnings, "yaml")
