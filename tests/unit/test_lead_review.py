"""The small rules of lead mode and review: which task an Agent call names, what counts
as a verdict, which script a lead or reviewer plays, and that both lose the write tools."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.definition import parse_definition
from orchestrator.lead import find_task_id
from orchestrator.review import parse_verdict
from orchestrator.roles import read_only
from orchestrator.rolescripts import LEAD_KEY, RoleScripts, review_keys
from orchestrator.scripts import ScriptSet, ScriptSetError

IDS = ["a", "b", "story-4-2.t1", "story-4-2.t10", "x:y"]


@pytest.mark.parametrize(("text", "after_word", "expected"), [
    ("a: write a.txt", False, "a"),
    ("story-4-2.t10: the rest", False, "story-4-2.t10"),
    ("do story-4-2.t1.", False, "story-4-2.t1"),
    ("story-4-2.t1 then story-4-2.t10", False, "story-4-2.t1"),
    ("write a.txt", False, None),  # a file name is not the task a
    ("x:y: colon ids", False, "x:y"),
    ("Write notes with a summary.", True, None),  # a word, not a task
    ("This is task b, please.", True, "b"),
    ("Task id: `story-4-2.t1`", True, "story-4-2.t1"),
    ("TASK story-4-2.t10 needs care", True, "story-4-2.t10"),
    ("", False, None),
])
def test_find_task_id(text: str, after_word: bool, expected: str | None) -> None:
    assert find_task_id(text, IDS, after_word=after_word) == expected


@pytest.mark.parametrize(("text", "verdict", "reason"), [
    ("Looks good.\nVERDICT: accept - tests pass", "accept", "tests pass"),
    ("VERDICT: reject — a.txt says helo", "reject", "a.txt says helo"),
    ("**Verdict:** Rejected: missing test", "reject", "missing test"),
    ("verdict: ACCEPTED", "accept", "accepted"),
    ("VERDICT: reject - first\nthinking more\nVERDICT: accept - second", "accept", "second"),
    ("I would accept this.", "error", "the reviewer gave no verdict"),
    ("VERDICT: maybe - unsure", "error", "the reviewer gave no verdict"),
    ("", "error", "the reviewer gave no verdict"),
])
def test_parse_verdict(text: str, verdict: str, reason: str) -> None:
    got = parse_verdict(text)
    assert got[0] == verdict and got[1].startswith(reason)


def test_role_scripts_sections_and_directories(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text("tasks:\n  a: [done]\n  _lead: [lead]\n  _review.a: ['VERDICT: reject']\n"
                 "  _review: ['VERDICT: accept']\n")
    roles = RoleScripts(ScriptSet(f))
    assert roles.check([LEAD_KEY], "orchestrator", "lead") is None
    one = roles.provider(review_keys("a"), "reviewer", "reviewer", cache_as="review:a")
    assert roles.provider(review_keys("a"), "reviewer", "reviewer", cache_as="review:a") is one
    assert "tasks._review.a" in one.source
    other = roles.provider(review_keys("b"), "reviewer", "reviewer", cache_as="review:b")
    assert "tasks._review" in other.source and other is not one
    # no section: the error names what was looked for
    f.write_text("tasks:\n  a: [done]\n")
    problem = RoleScripts(ScriptSet(f)).check(review_keys("a"), "reviewer", "reviewer")
    assert problem is not None and "_review.a, _review" in problem
    # a plain script has no room for a lead
    f.write_text("- done\n")
    problem = RoleScripts(ScriptSet(f)).check([LEAD_KEY], "orchestrator", "lead")
    assert problem is not None and "one script for every task" in problem
    # a directory: _lead.yaml, else <agent>.yaml (never default.yaml)
    d = tmp_path / "scripts"
    d.mkdir()
    (d / "default.yaml").write_text("- done\n")
    with pytest.raises(ScriptSetError, match="orchestrator.yaml"):
        RoleScripts(ScriptSet(d)).provider([LEAD_KEY], "orchestrator", "lead", "x")
    (d / "orchestrator.yaml").write_text("- lead\n")
    assert RoleScripts(ScriptSet(d)).check([LEAD_KEY], "orchestrator", "lead") is None


def test_roles_lose_the_write_tools() -> None:
    d = parse_definition("---\nname: lead\ndescription: x\ntools: Agent, Read, Write, "
                         "Bash(git log:*)\ndisallowedTools: Edit\n---\nLead.\n")
    ro = read_only(d)
    assert set(ro.disallowed_tools) == {"Edit", "Write", "MultiEdit", "NotebookEdit"}
    assert ro.definition_hash == d.definition_hash and ro.tools == d.tools
    assert read_only(ro) is ro
