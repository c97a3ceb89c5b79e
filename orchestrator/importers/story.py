"""Story Markdown -> tasks (the BMAD-style story format of the seed story).

Rules (docs/backlog.md has the user-facing version):

* Title: the first ``# `` heading. The story id comes from ``Story 4.2`` in it
  (``story-4-2``), else from the file name; task ids are ``<story-id>.t<N>``, so a
  re-import addresses the same tasks.
* ``## Acceptance Criteria``: a numbered list (``1.`` or ``1)``); indented lines continue
  the item above.
* ``## Tasks / Subtasks`` (any ``##`` heading starting with "Tasks"): checkbox items at the
  shallowest indentation are tasks (``- [ ] Task 1: title (AC: 1-3)``); everything indented
  under one (subtasks, notes) belongs to it. ``(AC: 1-3)``, ``(AC: 1, 4)``, ``(AC: #2)``
  cite criteria; ``(depends on: Task 1, 3)`` or ``(after Task 2)`` add dependencies.
* A checked task (``- [x]``) is imported *as completed*, not skipped: the backlog mirrors
  the story, and tasks that depend on it are not blocked forever.
* Each task's prompt: the story title and its task, the subtasks, the full text of the
  criteria it cites, then the story's ``## Story`` and ``## Dev Notes`` sections as
  context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.backlog import TaskSpec, TaskValidationError

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_NUMBERED = re.compile(r"^(\s*)(\d+)[.)]\s+(.*)$")
_CHECKBOX = re.compile(r"^(\s*)[-*+]\s+\[([ xX])\]\s+(.*)$")
_TASK_LABEL = re.compile(r"^(?:\*\*)?Task\s+(\d+)\s*[:.\-–]\s*(?:\*\*)?\s*", re.IGNORECASE)
_AC_REF = re.compile(r"\(\s*ACs?\s*[:#]?\s*([^)]*)\)", re.IGNORECASE)
_DEP_REF = re.compile(r"\(\s*(?:depends on|after|blocked by)\s*:?\s*([^)]*)\)", re.IGNORECASE)
_STORY_NO = re.compile(r"\bStory\s+(\d+(?:[.\-]\d+)*)", re.IGNORECASE)
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass
class StoryTask:
    number: int
    title: str
    line: int
    done: bool
    criteria: list[int]
    after: list[int]
    labelled: bool = True
    body: list[str] = field(default_factory=list)


@dataclass
class Story:
    title: str
    story_id: str
    criteria: dict[int, str]
    tasks: list[StoryTask]
    sections: dict[str, str]


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-") or "story"


def _sections(lines: list[str]) -> list[tuple[str, int, list[tuple[int, str]]]]:
    """``(heading, level, [(line number, text)])`` per ``##`` heading; deeper headings stay
    in their section's text (Dev Notes keep their ``###`` parts)."""
    out: list[tuple[str, int, list[tuple[int, str]]]] = [("", 0, [])]
    fence = False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else _HEADING.match(line)
        if m and len(m.group(1)) == 2:
            out.append((m.group(2).strip(), len(m.group(1)), []))
        else:
            out[-1][2].append((n, line))
    return out


def parse_numbers(text: str) -> list[int] | None:
    """``1-3`` -> [1, 2, 3]; ``1, 4`` -> [1, 4]; ``#2``/``AC2`` -> [2]; None if unreadable."""
    out: list[int] = []
    for part in re.split(r"[,;/]|\band\b", text):
        part = re.sub(r"(?i)\b(?:acs?|tasks?)(?=\d|\s|#|$)|#", "", part).strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*(?:-|–|—|\.\.|to)\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo or hi - lo > 100:
                return None
            out.extend(range(lo, hi + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            return None
    return out


def parse_story(text: str, path: Path) -> Story:
    lines = text.split("\n")
    title = next((m.group(2) for line in lines if (m := _HEADING.match(line))
                  and len(m.group(1)) == 1), path.stem)
    number = _STORY_NO.search(title)
    story_id = ("story-" + re.sub(r"[.\-]", "-", number.group(1))) if number \
        else _slug(path.stem)
    problems: list[str] = []
    criteria: dict[int, str] = {}
    tasks: list[StoryTask] = []
    sections: dict[str, str] = {}
    found_task_section = False
    for heading, level, body in _sections(lines):
        key = heading.lower()
        if level == 2:
            sections[key] = "\n".join(t for _, t in body).strip()
        if key.startswith("acceptance criteria"):
            last: int | None = None
            for _, line in body:
                m = _NUMBERED.match(line)
                if m and not m.group(1):
                    last = int(m.group(2))
                    criteria[last] = m.group(3).strip()
                elif last is not None and line.strip() and line[:1].isspace():
                    criteria[last] += " " + line.strip()
                elif not line.strip():
                    continue
                else:
                    last = None
        elif key.startswith("tasks"):
            found_task_section = True
            tasks += _parse_tasks(body, path, problems)
    if not found_task_section:
        all_lines = [(n, t) for n, t in enumerate(lines, 1)]
        tasks = [t for t in _parse_tasks(all_lines, path, problems) if t.labelled]
    for task in tasks:
        for c in task.criteria:
            if c not in criteria:
                known = f"1-{max(criteria)}" if criteria else "none"
                problems.append(f"{path}:{task.line}: Task {task.number} cites acceptance "
                                f"criterion {c}, but the story has {known}")
        numbers = {t.number for t in tasks}
        for a in task.after:
            if a not in numbers:
                problems.append(f"{path}:{task.line}: Task {task.number} depends on Task {a}, "
                                "which the story does not have")
    if not tasks and not problems:
        problems.append(f"{path}: no tasks found: expected a '## Tasks / Subtasks' section with "
                        "items like '- [ ] Task 1: title (AC: 1-3)'")
    if problems:
        raise TaskValidationError(problems)
    return Story(title=title, story_id=story_id, criteria=criteria, tasks=tasks,
                 sections=sections)


def _parse_tasks(body: list[tuple[int, str]], path: Path, problems: list[str]
                 ) -> list[StoryTask]:
    boxes = [(n, m) for n, line in body if (m := _CHECKBOX.match(line))]
    if not boxes:
        return []
    top = min(len(m.group(1).expandtabs(4)) for _, m in boxes)
    tasks: list[StoryTask] = []
    current: StoryTask | None = None
    for n, line in body:
        m = _CHECKBOX.match(line)
        if m and len(m.group(1).expandtabs(4)) == top:
            rest = m.group(3).strip()
            label = _TASK_LABEL.match(rest)
            number = int(label.group(1)) if label else len(tasks) + 1
            title = rest[label.end():] if label else rest
            cites: list[int] = []
            for ref in _AC_REF.finditer(title):
                got = parse_numbers(ref.group(1))
                if got is None:
                    problems.append(f"{path}:{n}: Task {number}: cannot read the acceptance "
                                    f"criteria reference {ref.group(0)!r} (use e.g. (AC: 1-3) "
                                    "or (AC: 1, 4))")
                else:
                    cites += got
            after: list[int] = []
            for ref in _DEP_REF.finditer(title):
                got = parse_numbers(ref.group(1))
                if got is None:
                    problems.append(f"{path}:{n}: Task {number}: cannot read the dependency "
                                    f"{ref.group(0)!r} (use e.g. (depends on: Task 1, 2))")
                else:
                    after += got
            title = _DEP_REF.sub("", _AC_REF.sub("", title)).strip().rstrip(":").strip()
            current = StoryTask(number=number, title=title or f"Task {number}", line=n,
                                done=m.group(2) in "xX", criteria=sorted(set(cites)),
                                after=sorted(set(after)), labelled=label is not None)
            tasks.append(current)
        elif current is not None and line.strip():
            current.body.append(line.rstrip())
    return tasks


def _dedent(lines: list[str]) -> list[str]:
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return [x[indent:] for x in lines]


def story_prompt(story: Story, task: StoryTask, file_name: str) -> str:
    parts = [f"{story.title}: Task {task.number}: {task.title}", ""]
    if task.body:
        parts += ["## Subtasks", *_dedent(task.body), ""]
    if task.criteria:
        parts += ["## Acceptance criteria this task must meet",
                  *[f"{c}. {story.criteria[c]}" for c in task.criteria], ""]
    for name in ("story", "dev notes"):
        if story.sections.get(name):
            parts += [f"## Story context: {name.title()} (from {file_name})",
                      story.sections[name], ""]
    return "\n".join(parts).rstrip() + "\n"


def story_specs(text: str, path: Path, *, sequential: bool = False,
                agent: str | None = None, priority: int | None = None
                ) -> tuple[list[TaskSpec], set[str]]:
    """``(specs in story order, ids of checked tasks)``. Raises ``TaskValidationError``."""
    story = parse_story(text, path)
    ids = {t.number: f"{story.story_id}.t{t.number}" for t in story.tasks}
    specs: list[TaskSpec] = []
    done: set[str] = set()
    previous: str | None = None
    seen: dict[int, int] = {}
    problems: list[str] = []
    for task in story.tasks:
        if task.number in seen:
            problems.append(f"{path}:{task.line}: duplicate Task {task.number} (first at line "
                            f"{seen[task.number]})")
            continue
        seen[task.number] = task.line
        task_id = ids[task.number]
        deps = [ids[a] for a in task.after]
        if sequential and previous is not None and previous not in deps:
            deps.append(previous)
        specs.append(TaskSpec(
            id=task_id, title=task.title, prompt=story_prompt(story, task, path.name),
            agent=agent, depends_on=tuple(deps),
            priority=priority if priority is not None else 2,
            acceptance_criteria=tuple(f"{c}. {story.criteria[c]}" for c in task.criteria),
            labels=(story.story_id,),
            source={"kind": "story", "file": str(path), "line": task.line,
                    "task": f"Task {task.number}", "story": story.title},
            origin=f"{path}:{task.line}"))
        if task.done:
            done.add(task_id)
        previous = task_id
    if problems:
        raise TaskValidationError(problems)
    return specs, done
