"""`orchestrail run` as a user runs it: real processes, real git repositories, a real
SQLite file (and PostgreSQL once), the script provider standing in for the model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests import pg_support
from tests.conftest import ORCHESTRAIL, ROOT
from tests.unit.agents._runtime import running

TESTER = """\
---
name: tester
description: Test agent; may sleep, run python and write files.
tools: Read, Write, Bash(sleep:*), Bash(python:*)
permissionMode: acceptEdits
---
You test things.
"""


def cli(cwd: Path, *args: str, store: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    if store:
        env["ORCHESTRAIL_STORE"] = store
    return subprocess.run([ORCHESTRAIL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def events(cwd: Path, store: str | None = None) -> list[dict[str, Any]]:
    out = cli(cwd, "events", "query", "--all", "--json", store=store)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def of(evs: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in evs if e["type"] == type_]


def project(tmp: Path, tasks: str, script: str, *, git: bool = True,
            store: str | None = None) -> Path:
    """A project with the tester agent, a task file imported, and a script file."""
    p = tmp / "proj"
    (p / ".claude" / "agents").mkdir(parents=True)
    (p / ".claude" / "agents" / "tester.md").write_text(TESTER)
    (p / "README").write_text("hello\n")
    (p / ".gitignore").write_text(".orchestrail/\n__pycache__/\n")
    (p / "tasks.yaml").write_text(textwrap.dedent(tasks))
    (p / "script.yaml").write_text(textwrap.dedent(script))
    if git:
        subprocess.run(["git", "init", "-q", str(p)], check=True)
        subprocess.run(["git", "-C", str(p), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(p), "-c", "user.name=t", "-c",
                        "user.email=t@example.com", "commit", "-qm", "init"], check=True)
    out = cli(p, "task", "import", "tasks.yaml", store=store)
    assert out.returncode == 0, out.stderr
    return p


def run_json(p: Path, *args: str, code: int = 0, store: str | None = None) -> dict[str, Any]:
    out = cli(p, "run", "--script", "script.yaml", "--json", *args, store=store)
    assert out.returncode == code, (out.stdout, out.stderr)
    return dict(json.loads(out.stdout))


CHAIN = """\
    defaults: {agent: tester}
    tasks:
      - {id: c, title: C, depends_on: [b], priority: 0}
      - {id: a, title: A, priority: 9}
      - {id: b, title: B, depends_on: [a], priority: 0}
    """
WRITE_EACH = """\
    tasks:
      a:
        - tool_calls: [{name: Write, input: {file_path: a.txt, content: "from a\\n"}}]
        - "wrote a"
      b:
        - tool_calls: [{name: Read, input: {file_path: a.txt}}]
        - tool_calls: [{name: Write, input: {file_path: b.txt, content: "from b\\n"}}]
        - "wrote b"
      c: ["nothing to do"]
    """



def gone(*markers: str, within: float = 10.0) -> list[str]:
    """The ``markers`` still in a live process's command line after waiting up to
    ``within`` seconds (a killed process group takes a moment to disappear on a loaded
    machine); empty when all are gone."""
    deadline = time.monotonic() + within
    while (left := [m for m in markers if running(m)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_dependency_order_worktrees_branches_and_trail(tmp_path: Path) -> None:
    p = project(tmp_path, CHAIN, WRITE_EACH)
    rep = run_json(p)
    assert rep["status"] == "completed" and rep["tasks"]["completed"] == ["a", "b", "c"]
    evs = events(p)
    run_id = rep["run_id"]
    started = of(evs, "run.started")[0]["data"]
    assert set(started["tasks"]) == {"a", "b", "c"}
    assert started["agents"]["tester"]["definition_hash"]
    assert started["git"]["commit"] and started["config_digest"]
    # dispatched strictly in dependency order, each attempt caused the session
    dispatched = of(evs, "task.dispatched")
    assert [d["data"]["task_id"] for d in dispatched] == ["a", "b", "c"]
    for d in dispatched:
        sid = d["data"]["session_id"]
        first = next(e for e in evs if e["stream"] == f"session-{sid}")
        assert first["type"] == "agent.started" and first["causation_id"] == d["id"]
        assert first["correlation_id"] == run_id
    # claims and completions carry the run as correlation id and the run as worker
    claims = [e for e in of(evs, "task.claimed") if e["correlation_id"] == run_id]
    assert {c["data"]["worker"] for c in claims} == {run_id} and len(claims) == 3
    # b's worktree saw a's work (merged branch); its commit holds only b.txt
    diffs = {e["data"]["task_id"]: e["data"] for e in of(evs, "workspace.diff")}
    assert [f["path"] for f in diffs["a"]["files"]] == ["a.txt"]
    assert [f["path"] for f in diffs["b"]["files"]] == ["b.txt"]
    assert "+from b" in diffs["b"]["patch"] and diffs["c"]["files"] == []
    read = [e for e in of(evs, "tool.completed") if e["data"]["tool"] == "Read"]
    assert "from a" in read[0]["data"]["output"]
    branches = subprocess.run(["git", "-C", str(p), "branch", "--list", "orchestrail/*"],
                              capture_output=True, text=True, check=True).stdout
    assert f"orchestrail/{run_id}/b" in branches
    show = subprocess.run(["git", "-C", str(p), "show", f"orchestrail/{run_id}/b:a.txt"],
                          capture_output=True, text=True, check=True).stdout
    assert show == "from a\n"
    assert not (p / "a.txt").exists()  # the project itself is untouched
    assert of(evs, "run.finished")[0]["data"]["status"] == "completed"
    replay = cli(p, "replay", run_id, "--format", "json")
    assert replay.returncode == 0, replay.stderr
    tree = json.loads(replay.stdout)
    assert {t["id"]: t["status"] for t in tree["tasks"]} == {
        "a": "completed", "b": "completed", "c": "completed"}
    assert cli(p, "verify").returncode == 0
    again = cli(p, "run", "--script", "script.yaml")
    assert again.returncode == 1 and "nothing to run" in again.stderr


def test_conflicting_dependencies_fail_the_dependent_with_gits_message(tmp_path: Path
                                                                       ) -> None:
    tasks = """\
        defaults: {agent: tester}
        tasks:
          - {id: "left:1", title: L}
          - {id: "right..2", title: R}
          - {id: "join.lock", title: J, depends_on: ["left:1", "right..2"]}
        """
    script = """\
        tasks:
          "left:1":
            - tool_calls: [{name: Write, input: {file_path: README, content: "left\\n"}}]
            - "left"
          "right..2":
            - tool_calls: [{name: Write, input: {file_path: README, content: "right\\n"}}]
            - "right"
          join.lock: ["never runs"]
        """
    p = project(tmp_path, tasks, script)
    rep = run_json(p, code=1)
    assert rep["tasks"]["completed"] == ["left:1", "right..2"]
    why = rep["tasks"]["failed"]["join.lock"]
    assert "the work of its dependencies conflicts" in why and "CONFLICT" in why
    branches = subprocess.run(["git", "-C", str(p), "branch", "--list", "orchestrail/*"],
                              capture_output=True, text=True, check=True).stdout.split()
    run_id = rep["run_id"]
    assert {f"orchestrail/{run_id}/left-1", f"orchestrail/{run_id}/right.2",
            f"orchestrail/{run_id}/join-lock"} <= set(branches)


def test_copy_workspaces_without_git(tmp_path: Path) -> None:
    p = project(tmp_path, CHAIN, WRITE_EACH, git=False)
    rep = run_json(p)
    assert rep["status"] == "completed"
    evs = events(p)
    assert of(evs, "run.started")[0]["data"]["workspace_mode"] == "copy"
    diffs = {e["data"]["task_id"]: e["data"] for e in of(evs, "workspace.diff")}
    assert diffs["b"]["files"] == [{"status": "A", "path": "b.txt"}]
    assert (p / ".orchestrail" / "worktrees" / rep["run_id"] / "b" / "a.txt").read_text() \
        == "from a\n"


def test_script_directory_per_task_agent_and_default(tmp_path: Path) -> None:
    tasks = """\
        defaults: {agent: tester}
        tasks: [{id: one, title: One}, {id: two, title: Two}, {id: three, title: Three}]
        """
    p = project(tmp_path, tasks, "[unused]\n")
    d = p / "scripts"
    d.mkdir()
    (d / "one.yaml").write_text("- from one.yaml\n")
    (d / "tester.yml").write_text("- from tester.yml\n")
    out = cli(p, "run", "--script", "scripts", "--only", "one", "--json")
    assert out.returncode == 0, out.stderr
    (d / "tester.yml").unlink()
    out = cli(p, "run", "--script", "scripts")
    assert out.returncode == 2 and "no script for task 'two'" in out.stderr
    assert "two.yaml, tester.yaml, default.yaml" in out.stderr
    (d / "default.yaml").write_text("turns: [{text: from default, bogus: 1}]\n")
    out = cli(p, "run", "--script", "scripts")
    assert out.returncode == 2 and "default.yaml: turn 1: unknown keys ['bogus']" in out.stderr
    (d / "default.yaml").write_text("- from default.yaml\n")
    assert cli(p, "run", "--script", "scripts").returncode == 0
    finals = {e["data"]["final_text"] for e in of(events(p), "agent.finished")}
    assert finals == {"from one.yaml", "from default.yaml"}
    # a per-task file: a malformed section is named by file and task id
    (p / "bad.yaml").write_text("tasks:\n  x: [{tool_calls: nope}]\n")
    assert cli(p, "task", "add", "X", "--id", "x", "--agent", "tester").returncode == 0
    out = cli(p, "run", "--script", "bad.yaml")
    assert out.returncode == 2 and "bad.yaml: tasks.x: turn 1: tool_calls must be a list" \
        in out.stderr


def test_failed_dependency_blocks_dependents(tmp_path: Path) -> None:
    script = """\
        tasks:
          a: [{error: {message: "bad request", status: 400}}]
          b: ["done"]
          c: ["done"]
        """
    p = project(tmp_path, CHAIN, script)
    rep = run_json(p, code=1)
    assert rep["status"] == "failed"
    assert "bad request" in rep["tasks"]["failed"]["a"]
    assert set(rep["tasks"]["blocked"]) == {"b", "c"}
    evs = events(p)
    assert [d["data"]["task_id"] for d in of(evs, "task.dispatched")] == ["a"]
    failed = of(evs, "task.failed")
    assert failed[0]["data"]["retry"] is False  # a 400 is not transient
    # the next run knows b and c can never become ready
    out = cli(p, "run", "--script", "script.yaml")
    assert out.returncode == 1 and "nothing to run" in out.stderr and "which failed" in out.stderr


def test_transient_failure_retried_as_new_attempt(tmp_path: Path) -> None:
    tasks = """\
        tasks: [{id: a, title: A, agent: tester}]
        """
    script = """\
        tasks:
          a:
            - error: {message: overloaded, status: 529, transient: true}
            - "second attempt works"
        """
    p = project(tmp_path, tasks, script)
    rep = run_json(p, "--model-attempts", "1", "--retries", "2", "--retry-delay", "0.05")
    assert rep["status"] == "completed" and rep["attempts"] == 2 and rep["retries"] == 1
    evs = events(p)
    assert [d["data"]["attempt"] for d in of(evs, "task.dispatched")] == [1, 2]
    failed = of(evs, "task.failed")
    assert len(failed) == 1 and failed[0]["data"]["retry"] is True
    assert "overloaded" in failed[0]["data"]["error"]
    assert [c["data"]["attempt"] for c in of(evs, "task.claimed")] == [1, 2]
    # no retries left: the transient failure fails the task
    p2 = project(tmp_path / "two", tasks, script.replace('- "second attempt works"',
                                                         '- error: {message: again, '
                                                         'status: 503, transient: true}'))
    rep2 = run_json(p2, "--model-attempts", "1", "--retries", "1", "--retry-delay", "0",
                    code=1)
    assert rep2["attempts"] == 2 and "again" in rep2["tasks"]["failed"]["a"]


def test_task_timeout_recorded(tmp_path: Path) -> None:
    tasks = "tasks: [{id: slow, title: S, agent: tester}]\n"
    script = """\
        - tool_calls: [{name: Bash, input: {command: "sleep 60"}}]
        - "slept"
        """
    p = project(tmp_path, tasks, script)
    t0 = time.monotonic()
    rep = run_json(p, "--task-timeout", "1", code=1)
    assert time.monotonic() - t0 < 20
    assert rep["tasks"]["failed"]["slow"].startswith("timeout")
    evs = events(p)
    ended = of(evs, "agent.failed")[0]["data"]
    assert ended["status"] == "timeout" and "timed out after 1 s" in ended["error"]
    assert of(evs, "task.failed")[0]["data"]["retry"] is False


def test_budgets_per_task_and_per_run(tmp_path: Path) -> None:
    tasks = """\
        defaults: {agent: tester}
        tasks: [{id: t1, title: T1}, {id: t2, title: T2}, {id: t3, title: T3}]
        """
    script = """\
        usage: {input_tokens: 1000, output_tokens: 200}
        turns:
          - tool_calls: [{name: Read, input: {file_path: README}}]
          - "read it"
        """
    p = project(tmp_path, tasks, script)
    per_task = run_json(p, "--max-turns", "1", "--only", "t1", code=1)
    assert per_task["tasks"]["failed"]["t1"].startswith("budget_exceeded:turns")
    rep = run_json(p, "--run-max-tokens", "2000", "--only", "t2", "--only", "t3", code=1)
    assert rep["status"] == "budget_exceeded:tokens"
    assert rep["tasks"]["completed"] == ["t2"] and rep["tasks"]["not_run"] == ["t3"]
    assert rep["tokens"] == 2400
    evs = [e for e in events(p) if e["correlation_id"] == rep["run_id"]]
    stopping = of(evs, "run.stopping")
    assert stopping and stopping[0]["data"]["limit"] == 2000
    assert of(evs, "run.finished")[0]["data"]["status"] == "budget_exceeded:tokens"


def test_parallel_runs_sessions_at_once(tmp_path: Path) -> None:
    tasks = """\
        defaults: {agent: tester}
        tasks: [{id: p1, title: P1}, {id: p2, title: P2}, {id: p3, title: P3},
                {id: p4, title: P4}]
        """
    script = """\
        - tool_calls: [{name: Bash, input: {command: "sleep 1.5"}}]
        - "slept"
        """
    p = project(tmp_path, tasks, script)
    t0 = time.monotonic()
    rep = run_json(p, "--parallel", "4")
    took = time.monotonic() - t0
    assert rep["status"] == "completed" and len(rep["tasks"]["completed"]) == 4
    assert took < 5.5, took  # serial would take 6 s of sleeping alone
    evs = events(p)
    starts = sorted(e["position"] for e in of(evs, "agent.started"))
    ends = sorted(e["position"] for e in evs if e["type"] == "agent.finished")
    assert starts[-1] < ends[0]  # all four started before the first finished
    paths = {d["data"]["workspace"]["path"] for d in of(evs, "task.dispatched")}
    assert len(paths) == 4


def interrupt_when(p: Path, marker: str, *args: str
                   ) -> tuple[subprocess.Popen[str], str, str, float]:
    """Start `run --script script.yaml --json ARGS` in ``p``, wait until stderr shows
    ``marker``, send SIGINT; returns (proc, stdout, rest of stderr, seconds from the signal
    to the exit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    proc = subprocess.Popen([ORCHESTRAIL, "run", "--script", "script.yaml", "--json", *args],
                            cwd=p, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if marker in line:
            break
    else:
        proc.kill()
        pytest.fail(f"never saw {marker!r}: {seen}")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc, out, err, time.monotonic() - t0


def test_sigint_cancels_cleanly(tmp_path: Path) -> None:
    tasks = """\
        defaults: {agent: tester}
        tasks: [{id: slow, title: Slow}, {id: next, title: Next, depends_on: [slow]}]
        """
    script = """\
        - tool_calls: [{name: Bash, input: {command: "sleep 59.7"}}]
        - "slept"
        """
    p = project(tmp_path, tasks, script)
    proc, out, err, took = interrupt_when(p, "Bash: sleep 59.7")
    assert proc.returncode == 130, err
    assert took < 10
    rep = json.loads(out)
    assert rep["status"] == "cancelled" and "SIGINT" in rep["reason"]
    assert "slow" in rep["tasks"]["released"] and rep["tasks"]["not_run"] == ["next"]
    evs = events(p)
    assert of(evs, "run.finished")[0]["data"]["status"] == "cancelled"
    failed = of(evs, "agent.failed")[0]["data"]
    assert failed["status"] == "cancelled" and "SIGINT" in failed["error"]
    assert of(evs, "task.released")[0]["data"]["reason"].startswith("cancelled")
    listed = json.loads(cli(p, "task", "list", "--json").stdout)
    assert {t["id"]: t["status"] for t in listed} == {"slow": "ready", "next": "blocked"}
    # the sleep's process group was killed with the session
    assert gone("sleep 59.7") == []
    assert cli(p, "verify").returncode == 0


def test_anthropic_provider_over_the_wire(tmp_path: Path) -> None:
    """The real-model path: the anthropic SDK talks HTTP to a scripted Messages API; one
    client serves every task of the run; a missing key is refused before anything runs."""
    from tests.fakes.model_servers import AnthropicServer, Script, error, text, tool_use

    tasks = """\
        defaults: {agent: tester}
        tasks: [{id: w1, title: W1}, {id: w2, title: W2, depends_on: [w1]}]
        """
    p = project(tmp_path, tasks, "[unused]\n")
    n = len(events(p))
    out = cli(p, "run", "--provider", "anthropic")
    assert out.returncode == 2 and "ANTHROPIC_API_KEY" in out.stderr
    assert len(events(p)) == n
    script = Script([tool_use("Write", {"file_path": "w1.txt", "content": "one\n"}),
                     text("wrote w1"), error(529, "overloaded"), text("w2 done")])
    with AnthropicServer(script) as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
        env.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY="test-key")
        proc = subprocess.run([ORCHESTRAIL, "run", "--provider", "anthropic", "--json",
                               "--model", "claude-sonnet-4-5"], cwd=p, env=env,
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["tasks"]["completed"] == ["w1", "w2"] and rep["tokens"] > 0
    assert rep["cost_usd"] is not None and rep["cost_usd"] > 0  # a priced model
    assert len(script.requests) == 4 and all(r["model"] == "claude-sonnet-4-5"
                                             for r in script.requests)
    evs = events(p)
    assert [e["data"]["status"] for e in of(evs, "model.failed")] == [529]
    assert of(evs, "run.started")[0]["data"]["provider"] == "anthropic"


# -- bad input: a clear error, exit code, nothing written --------------------------------

def _count(p: Path) -> int:
    return len(events(p))


def test_unknown_agent_missing_agent_and_missing_script(tmp_path: Path) -> None:
    tasks = """\
        tasks:
          - {id: a, title: A, agent: tester}
          - {id: b, title: B}
        """
    p = project(tmp_path, tasks, "tasks: {a: [done]}\n")
    n = _count(p)
    out = cli(p, "run", "--script", "script.yaml")
    assert out.returncode == 2
    assert "task 'b' has no agent" in out.stderr and "lead" in out.stderr
    assert "no section for task 'b'" in out.stderr
    (p / ".claude" / "agents" / "tester.md").unlink()
    out = cli(p, "run", "--script", "script.yaml", "--only", "a")
    assert out.returncode == 2 and "unknown agent 'tester'" in out.stderr
    out = cli(p, "run", "--only", "a")
    assert out.returncode == 2 and "--script" in out.stderr
    out = cli(p, "run", "--script", "nope.yaml", "--only", "a")
    assert out.returncode == 2 and "nope.yaml" in out.stderr
    out = cli(p, "run", "--script", "script.yaml", "--only", "zzz")
    assert out.returncode == 2 and "no task 'zzz'" in out.stderr
    assert _count(p) == n  # nothing written


def test_dependency_cycle_in_the_store(tmp_path: Path) -> None:
    p = project(tmp_path, "tasks: [{id: a, title: A, agent: tester}]\n", "[done]\n")
    for tid, dep in (("x", "y"), ("y", "x")):
        ev = json.dumps({"id": tid, "title": tid, "prompt": tid, "agent": "tester",
                         "depends_on": [dep], "priority": 2})
        out = cli(p, "events", "append", "--stream", f"task-{tid}", "--type",
                  "task.created", "--data", ev)
        assert out.returncode == 0, out.stderr
    n = _count(p)
    out = cli(p, "run", "--script", "script.yaml")
    assert out.returncode == 2 and "dependency cycle x -> y -> x" in out.stderr
    assert _count(p) == n


def test_no_ready_tasks_and_unwritable_workspace(tmp_path: Path) -> None:
    p = project(tmp_path, CHAIN, WRITE_EACH)
    out = cli(p, "run", "--script", "script.yaml", "--only", "b")
    assert out.returncode == 1 and "nothing to run" in out.stderr
    assert "depends on a (open), which is not part of this run" in out.stderr
    (p / ".orchestrail" / "worktrees").write_text("in the way")
    n = _count(p)
    out = cli(p, "run", "--script", "script.yaml")
    assert out.returncode == 2 and "worktrees is not writable" in out.stderr
    assert _count(p) == n
    out = cli(p, "run", "--script", "script.yaml", "--workspace", "none", "--parallel", "2")
    assert out.returncode == 2 and "--parallel 1" in out.stderr


def test_sqlite_store_removed_mid_run(tmp_path: Path) -> None:
    tasks = """\
        defaults: {agent: tester}
        tasks: [{id: slow, title: Slow}, {id: next, title: Next}]
        """
    script = """\
        - tool_calls: [{name: Bash, input: {command: "sleep 2"}}]
        - "slept"
        """
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    url = f"sqlite:///{store_dir}/events.db"
    p = tmp_path / "proj"
    (p / ".claude" / "agents").mkdir(parents=True)
    (p / ".claude" / "agents" / "tester.md").write_text(TESTER)
    (p / "tasks.yaml").write_text(textwrap.dedent(tasks))
    (p / "script.yaml").write_text(textwrap.dedent(script))
    assert cli(p, "task", "import", "tasks.yaml", store=url).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    env["ORCHESTRAIL_STORE"] = url
    proc = subprocess.Popen([ORCHESTRAIL, "run", "--script", "script.yaml"], cwd=p, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for _ in range(200):
        if "Bash: sleep 2" in proc.stderr.readline():
            break
    shutil.rmtree(store_dir)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert f"SQLite store {store_dir}/events.db was removed during the run" in err
    assert "could not be recorded" in err


# -- PostgreSQL ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg_database() -> Any:
    with pg_support.fresh_database() as url:
        yield url


def test_parallel_run_on_postgres_and_connection_killed(tmp_path: Path,
                                                        pg_database: str) -> None:
    url = pg_support.with_schema(pg_database, pg_support.new_schema())
    tasks = """\
        defaults: {agent: tester}
        tasks: [{id: q1, title: Q1}, {id: q2, title: Q2},
                {id: q3, title: Q3, depends_on: [q1, q2]}]
        """
    p = project(tmp_path, tasks, "- done\n", store=url)
    rep = run_json(p, "--parallel", "2", store=url)
    assert rep["status"] == "completed" and rep["tasks"]["completed"][-1] == "q3"
    evs = events(p, store=url)
    assert [e["data"]["status"] for e in of(evs, "run.finished")] == ["completed"]
    assert cli(p, "verify", store=url).returncode == 0
    # a slow task, then every connection of the store killed under the run
    (p / "tasks.yaml").write_text("tasks: [{id: s, title: S, agent: tester}]\n")
    (p / "script.yaml").write_text("- tool_calls: [{name: Bash, input: {command: 'sleep 2'}}]"
                                   "\n- slept\n")
    assert cli(p, "task", "import", "tasks.yaml", store=url).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    env["ORCHESTRAIL_STORE"] = url
    proc = subprocess.Popen([ORCHESTRAIL, "run", "--script", "script.yaml", "--json"], cwd=p,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for _ in range(200):
        if "Bash: sleep 2" in proc.stderr.readline():
            break
    dbname = pg_database.rsplit("/", 1)[1]
    with pg_support.admin_connect() as conn:
        killed = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()",
                              (dbname,)).fetchall()
    assert killed
    _, err = proc.communicate(timeout=60)
    evs = events(p, store=url)
    runs = of(evs, "run.finished")
    # the append after the killed connection fails; the pool reconnects for the rest, so
    # the run records its end and gives the task back
    assert proc.returncode == 1 and "the store failed" in err, err
    # libpq's words for the killed backend: the server's notice if it was read before the
    # socket closed, else its own (which of the two depends on timing)
    assert ("terminating connection" in err or "server closed the connection" in err
            or "terminated abnormally" in err), err
    assert "recorded as failed" in err
    assert len(runs) == 2 and runs[-1]["data"]["status"] == "failed"
    assert "s" in runs[-1]["data"]["tasks"]["released"]
    assert of(evs, "task.released")[-1]["stream"] == "task-s"


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """examples/demo.sh: the seed story imported, dispatched by `orchestrail run` to the
    backend-implementer and the reviewer, replayed and verified, with no API key."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCHESTRAIL_", "ANTHROPIC_", "OPENAI_"))}
    env["ORCHESTRAIL_DEMO_DIR"] = str(tmp_path)
    out = subprocess.run(["bash", str(ROOT / "examples" / "demo.sh")], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "completed; 7 completed, 0 failed" in out.stdout
    assert "[story-4-2.review] reviewer: dispatched" in out.stderr
    assert "denied: " in out.stderr  # the pip install of task 5
    assert "ok: " in out.stdout and "verified" in out.stdout
    assert "orchestrail replay --last" in out.stdout and "audit" in out.stdout
    assert "no divergence" in out.stdout  # rerun demo-run: executed again, same outcomes
    assert "runs demo-run (a) and demo-rerun (b) are the same" in out.stdout
    evs = events(tmp_path)
    order = [d["data"]["task_id"] for d in of(evs, "task.dispatched")]
    assert order == [f"story-4-2.t{i}" for i in range(1, 7)] + ["story-4-2.review"]
    agents = {e["data"]["agent"] for e in of(evs, "agent.started")}
    assert agents == {"backend-implementer", "reviewer"}
    review_sid = of(evs, "task.dispatched")[-1]["data"]["session_id"]
    review = next(e for e in of(evs, "agent.finished")
                  if e["stream"] == f"session-{review_sid}")["data"]["final_text"]
    # run --review: the reviewer agent accepted every task's attempt
    verdicts = {e["data"]["task_id"]: e["data"]["verdict"] for e in of(evs, "review.completed")}
    assert verdicts == {t: "accept" for t in order}
    assert review.startswith("Review of story 4.2")
