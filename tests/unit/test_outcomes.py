"""The rule rerun and diff share for "the same tool call, executed again"."""

from __future__ import annotations

from orchestrator.fold import ToolCall
from orchestrator.outcomes import compare_calls, input_key, normalise


def call(output: str, *, exit_code: int | None = 0, is_error: bool = False,
         sha: str | None = None) -> ToolCall:
    from datetime import UTC, datetime

    tc = ToolCall("toolu_1", "Bash", "s", 1, {"command": "python -m pytest -q"})
    tc.decision, tc.output, tc.exit_code, tc.is_error = "allowed", output, exit_code, is_error
    tc.output_sha256 = sha
    tc.completed_at = datetime.now(UTC)
    return tc


def test_normalise_volatile_text() -> None:
    a = normalise("2 passed in 0.01s at 2026-11-23T10:00:01.123Z in /ws/x", ["/ws"])
    b = normalise("2 passed in 0.35s at 2026-11-24 11:02:03 in /tmp/rerun-1/x", ["/tmp/rerun-1"])
    assert a == b == "2 passed in <time> at <timestamp> in <workspace>/x"
    assert normalise("took 12ms, 0x7fa3b2c1d0e8") == "took <time>, <addr>"
    assert normalise("3 passed") != normalise("2 passed")


def test_exit_code_decides_output_is_a_note() -> None:
    assert compare_calls(call("2 passed in 0.01s"), call("2 passed in 0.02s")) is None
    failed = compare_calls(call("2 passed in 0.01s"),
                           call("1 failed in 0.02s", exit_code=1, is_error=True))
    assert failed is not None and failed["divergent"] and failed["kind"] == "outcome"
    assert failed["fields"] == ["status", "exit_code"]
    assert "-2 passed in 0.01s" in failed["output_diff"]
    # same outcome, other exit code of an error: still a divergence
    e1 = compare_calls(call("x", exit_code=1, is_error=True), call("x", exit_code=2,
                                                                   is_error=True))
    assert e1 is not None and e1["fields"] == ["exit_code"]
    note = compare_calls(call("2 passed"), call("3 passed"))
    assert note is not None and note["kind"] == "output" and not note["divergent"]
    strict = compare_calls(call("2 passed"), call("3 passed"), strict=True)
    assert strict is not None and strict["divergent"]
    # equal hashes are equal whatever the shown text
    assert compare_calls(call("a", sha="h"), call("b", sha="h")) is None


def test_input_key_ignores_workspace_roots() -> None:
    a, b = call("x"), call("x")
    a.input = {"file_path": "/ws/one/app.py"}
    b.input = {"file_path": "/tmp/two/app.py"}
    assert input_key(a, ["/ws/one"]) == input_key(b, ["/tmp/two"])


def test_glob_output_order_is_not_compared() -> None:
    """Glob lists newest first; a scratch clone's mtimes are not the recording's."""
    a, b = call("store/b.py\nstore/a.py"), call("store/a.py\nstore/b.py")
    assert compare_calls(a, b) is not None  # Bash: the order counts
    a.tool = b.tool = "Glob"
    assert compare_calls(a, b) is None and compare_calls(a, b, strict=True) is None
    b.output = "store/a.py\nstore/c.py"
    other = compare_calls(a, b)
    assert other is not None and other["kind"] == "output"
