"""Importers: the seed story (mojibake and all), story rules, YAML task files and their
errors, and the mojibake repair on its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.backlog import TaskValidationError
from orchestrator.importers import load_tasks
from orchestrator.importers.story import parse_numbers
from orchestrator.importers.text import read_user_text, repair_mojibake
from tests.conftest import ROOT, SHARED

SEED = SHARED / "seeds" / "story-4.2-event-store-backend-selection.md"
MOJIBAKE = ("‚ö†", "Ô∏è", "‚Üí", "‚úÖ", "üìñ", "üî¥")


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    return Path(shutil.copy(SEED, tmp_path / SEED.name))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_seed_story_imports_six_tasks_with_criteria_and_subtasks(seed: Path) -> None:
    loaded = load_tasks(seed)
    assert loaded.kind == "story" and not loaded.done
    assert [s.id for s in loaded.specs] == [f"story-4-2.t{i}" for i in range(1, 7)]
    assert [s.title for s in loaded.specs] == [
        "Define event store interface", "Implement local file backend",
        "Implement PostgreSQL backend", "Add EventStore backend support",
        "Create backend selection system", "Implement retention policy"]
    t1, t2, _, _, t5, t6 = loaded.specs
    assert [c[:2] for c in t1.acceptance_criteria] == ["1.", "2.", "3."]
    assert "1. Event store supports append-only writes (no updates or deletes)" in t1.prompt
    assert "3. Event store supports filtering by event type, actor, correlation ID" in t1.prompt
    assert "4. Event store handles high write throughput" not in t1.prompt  # not cited
    assert "Subtask 1.3: Add pagination support for large result sets" in t1.prompt
    assert "Subtask 2.1" not in t1.prompt and "Subtask 2.2: Add JSONL format" in t2.prompt
    assert t5.acceptance_criteria == ("6. Backend selection configurable via configuration file",)
    assert "default: infinite retention" in t6.prompt
    assert "Story 4.2: Event Store Backend Selection" in t1.prompt
    assert "As a **DevOps engineer**" in t1.prompt  # story text as context
    assert all(s.depends_on == () and s.agent is None for s in loaded.specs)
    assert t1.source["line"] == 41 and t1.source["kind"] == "story"


def test_seed_story_mojibake_is_repaired(seed: Path) -> None:
    loaded = load_tasks(seed)
    text = "\n".join(s.prompt for s in loaded.specs)
    assert not any(m in text for m in MOJIBAKE)
    assert "### ⚠️ Development Process Reminder" in text and "1. ✅ Read" in text
    assert any("repaired" in w and "Mac Roman" in w for w in loaded.warnings)


def test_sequential_chains_tasks(seed: Path) -> None:
    specs = load_tasks(seed, sequential=True).specs
    assert specs[0].depends_on == ()
    assert [s.depends_on for s in specs[1:]] == [(f"story-4-2.t{i}",) for i in range(1, 6)]


STORY = """# Story 7: Health checks

## Acceptance Criteria

1. A /health endpoint
   that returns 200
2. Logs are structured
3. Docs mention it
4. Metrics exported

## Tasks / Subtasks

- [x] Task 1: Add the endpoint (AC: 1)
  - [x] Subtask 1.1: route
- [ ] Task 2: Structured logs (AC: 2, 4) (depends on: Task 1)
  - [ ] Subtask 2.1: structlog
    more detail for 2.1
- [ ] Task 3: Write docs (AC: #1–3)
"""


def test_story_rules_checked_tasks_ranges_lists_and_dependencies(tmp_path: Path) -> None:
    loaded = load_tasks(write(tmp_path, "health.md", STORY), agent="reviewer")
    t1, t2, t3 = loaded.specs
    assert loaded.done == {"story-7.t1"}
    assert t1.acceptance_criteria == ("1. A /health endpoint that returns 200",)
    assert [c[0] for c in t2.acceptance_criteria] == ["2", "4"]
    assert [c[0] for c in t3.acceptance_criteria] == ["1", "2", "3"]
    assert t2.depends_on == ("story-7.t1",) and t3.depends_on == ()
    assert "  more detail for 2.1" in t2.prompt and t2.title == "Structured logs"
    assert all(s.agent == "reviewer" for s in loaded.specs)


@pytest.mark.parametrize("text,expected", [
    ("1-3", [1, 2, 3]), ("1, 4", [1, 4]), ("#2", [2]), ("1–3", [1, 2, 3]),
    ("AC1, AC3", [1, 3]), ("1, 3-4", [1, 3, 4]), ("Task 1 and Task 2", [1, 2]),
    ("soon", None), ("3-1", None),
])
def test_parse_numbers(text: str, expected: list[int] | None) -> None:
    assert parse_numbers(text) == expected


@pytest.mark.parametrize("body,needle", [
    ("# Story 1: x\n\n## Acceptance Criteria\n\n1. a\n", "no tasks found"),
    ("# Story 1: x\n\n## Acceptance Criteria\n\n1. a\n\n## Tasks\n\n- [ ] Task 1: y (AC: 9)\n",
     "story.md:9: Task 1 cites acceptance criterion 9, but the story has 1-1"),
    ("# S\n\n## Tasks\n\n- [ ] Task 1: a\n- [ ] Task 1: b\n",
     "story.md:6: duplicate Task 1 (first at line 5)"),
    ("# S\n\n## Tasks\n\n- [ ] Task 1: a (AC: soon)\n", "cannot read the acceptance criteria"),
    ("# S\n\n## Tasks\n\n- [ ] Task 2: a (after Task 5)\n", "depends on Task 5, which the"),
])
def test_bad_stories_are_clear_errors(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(TaskValidationError) as err:
        load_tasks(write(tmp_path, "story.md", body))
    assert needle in "\n".join(err.value.problems)


def test_story_without_tasks_section_uses_labelled_checkboxes(tmp_path: Path) -> None:
    body = "# Fix it\n\nTodo:\n\n- [ ] Task 1: do it\n- [ ] not a task label\n"
    specs = load_tasks(write(tmp_path, "fix-it.md", body)).specs
    assert [(s.id, s.title) for s in specs] == [("fix-it.t1", "do it")]


def test_non_utf8_story_does_not_crash(tmp_path: Path) -> None:
    path = tmp_path / "latin.md"
    path.write_bytes("# Story 2: Café\n\n## Tasks\n\n- [ ] Task 1: déjà vu\n".encode("cp1252"))
    loaded = load_tasks(path)
    assert loaded.specs[0].title == "déjà vu" and "not UTF-8" in loaded.warnings[0]


def test_mojibake_repair_is_narrow() -> None:
    assert repair_mojibake("‚ö†Ô∏è ok ‚Üí done")[0] == "⚠️ ok → done"
    assert repair_mojibake("Ã©tÃ© â€œquotedâ€\x9d")[0] == "été “quoted”"
    genuine = "café, naïve, résumé, Ångström, 東京, ⚠️"
    assert repair_mojibake(genuine) == (genuine, 0, None)


def test_read_user_text_strips_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "x.md"
    path.write_bytes(b"\xef\xbb\xbfa\r\nb\r\n")
    assert read_user_text(path) == ("a\nb\n", [])


# -- YAML ------------------------------------------------------------------------------

def test_example_task_file_loads() -> None:
    specs = load_tasks(ROOT / "examples" / "tasks" / "health.yaml").specs
    assert [(s.id, s.agent, s.priority, s.depends_on) for s in specs] == [
        ("health.endpoint", "backend-implementer", 1, ()),
        ("health.review", "reviewer", 2, ("health.endpoint",))]
    assert specs[0].labels == ("health-app",) and len(specs[0].acceptance_criteria) == 3
    assert specs[1].source["key"] == "tasks[1]"


def test_yaml_bare_list_defaults_and_sequential(tmp_path: Path) -> None:
    path = write(tmp_path, "t.yml", "- id: a\n  title: A\n- {id: b, title: B, agent: null}\n")
    specs = load_tasks(path, sequential=True, agent="reviewer").specs
    assert specs[0].prompt == "A" and specs[1].depends_on == ("a",)
    assert specs[0].agent == "reviewer"


@pytest.mark.parametrize("body,needle", [
    ("tasks:\n  - id: a\n    title: A\n    priority: high\n",
     "t.yaml:4: tasks[0].priority: Input should be a valid integer"),
    ("tasks:\n  - id: a\n    title: A\n  - id: b\n    titel: B\n",
     "t.yaml:5: tasks[1].titel: unknown key"),
    ("tasks:\n  - id: a\n    title: A\n  - id: b\n    titel: B\n",
     "t.yaml:4: tasks[1].title: Field required"),
    ("tasks:\n  - id: 'bad id'\n    title: A\n", "t.yaml:2: tasks[0].id: invalid task id"),
    ("tasks: [\n", "t.yaml:2: invalid YAML"),
    ("tasks: []\n", "'tasks' is empty"),
    ("just text\n", "expected a mapping with 'tasks:'"),
    ("defaults: {agnet: x}\ntasks: []\n", "t.yaml:1: defaults.agnet: unknown key"),
])
def test_yaml_errors_name_file_key_and_line(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(TaskValidationError) as err:
        load_tasks(write(tmp_path, "t.yaml", body))
    assert any(needle in p for p in err.value.problems), err.value.problems


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TaskValidationError, match="unknown task file type '.txt'"):
        load_tasks(write(tmp_path, "t.txt", "x"))
    with pytest.raises(TaskValidationError, match="cannot read"):
        load_tasks(tmp_path / "missing.yaml")
