"""`orchestrail worker` as operators run it: real processes sharing one store (PostgreSQL
for the show, SQLite files for the rest), real signals, the script provider standing in for
the model, real tool calls (Bash running python that appends to a marker file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests import pg_support
from tests.conftest import ORCHESTRAIL
from tests.integration.test_run_cli import cli, events, of, project


def env_for(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
    env["ORCHESTRAIL_STORE"] = store
    return env


def spawn(p: Path, store: str, *args: str, stderr: Any = subprocess.PIPE
          ) -> subprocess.Popen[str]:
    return subprocess.Popen([ORCHESTRAIL, "worker", "--script", "script.yaml",
                             "--workspace", "none", "--json", *args], cwd=p,
                            env=env_for(store), stdout=subprocess.PIPE, stderr=stderr,
                            text=True)


def marker_tasks(n: int, seconds: float) -> tuple[str, str]:
    """``n`` tasks; each one's script runs python that sleeps, then appends one line to
    ``markers/<task>`` (so the workspace counts executions), then answers."""
    ids = [f"t{i:03}" for i in range(n)]
    tasks = "defaults: {agent: tester}\ntasks:\n" + "".join(
        f"  - {{id: {t}, title: Task {t}}}\n" for t in ids)
    script: dict[str, Any] = {"tasks": {}}
    for t in ids:
        code = (f"import time; time.sleep({seconds}); "
                f"open('markers/{t}', 'a').write('x')")
        script["tasks"][t] = [
            {"tool_calls": [{"name": "Bash", "input": {"command": f'python -c "{code}"'}}]},
            f"marked {t}"]
    return tasks, json.dumps(script)


def setup(tmp: Path, n: int, seconds: float, store: str) -> Path:
    tasks, script = marker_tasks(n, seconds)
    p = project(tmp, tasks, script, git=False, store=store)
    (p / "markers").mkdir()
    return p


def completions(evs: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["stream"][5:] for e in of(evs, "task.completed"))


def worker_runs(evs: list[dict[str, Any]]) -> dict[str, str]:
    """worker name -> its run id."""
    return {e["data"]["worker_name"]: e["data"]["run_id"] for e in of(evs, "run.started")
            if e["data"].get("kind") == "worker"}


# -- the show: 3 workers on PostgreSQL, one SIGKILLed, 100 tasks --------------------------

@pytest.fixture(scope="module")
def pg_database() -> Any:
    with pg_support.fresh_database() as url:
        yield url


def test_three_workers_one_killed_100_tasks_each_completed_once(tmp_path: Path,
                                                                pg_database: str) -> None:
    url = pg_support.with_schema(pg_database, pg_support.new_schema())
    p = setup(tmp_path, 100, 0.3, url)
    lease = ["--lease", "2", "--heartbeat", "0.5"]
    logs = [open(tmp_path / f"w{i}.log", "w") for i in (2, 3)]  # noqa: SIM115
    victim = spawn(p, url, "--id", "w1", *lease)
    others = [spawn(p, url, "--id", f"w{i}", *lease, "--idle-exit", "5", stderr=log)
              for i, log in zip((2, 3), logs, strict=True)]
    assert victim.stderr is not None
    calls: list[str] = []
    deadline = time.monotonic() + 120
    while len(calls) < 6 and time.monotonic() < deadline:
        line = victim.stderr.readline()
        if not line:
            break
        if "Bash: python" in line:  # w1 is inside a tool call, holding the task's lease
            calls.append(line.split("]")[0].lstrip("["))
    assert len(calls) == 6, f"w1 never got going: {calls}"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    in_flight = calls[-1]
    reports = []
    for proc in others:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        reports.append(json.loads(out))
    for log in logs:
        log.close()

    evs = events(p, store=url)
    done = completions(evs)
    missing = {f"t{i:03}" for i in range(100)} - set(done)
    assert not missing, "\n".join(  # the trail of what is missing, to see why
        f"{e['stream']} {e['type']} {e['correlation_id']} {e['data']}" for e in evs
        if e["stream"][5:] in missing or e["data"].get("task_id") in missing)
    assert set(done.values()) == {1}, {t: n for t, n in done.items() if n != 1}
    runs = worker_runs(evs)
    assert set(runs) == {"w1", "w2", "w3"}
    # w1 died holding in_flight's lease; another worker took it over and completed it
    takeovers = [e for e in of(evs, "task.claimed") if e["data"].get("took_over_from")]
    assert [e["stream"] for e in takeovers] == [f"task-{in_flight}"]
    assert takeovers[0]["data"]["took_over_from"] == runs["w1"]
    assert takeovers[0]["data"]["expired_lease_until"]
    assert takeovers[0]["correlation_id"] in (runs["w2"], runs["w3"])
    final = next(e for e in of(evs, "task.completed") if e["stream"] == f"task-{in_flight}")
    assert final["data"]["worker"] == takeovers[0]["data"]["worker"] != runs["w1"]
    assert sum(len(r["took_over"]) for r in reports) == 1
    # every completion came from the worker holding the claim, and the counts add up
    by_worker = Counter(e["data"]["worker"] for e in of(evs, "task.completed"))
    assert by_worker[runs["w1"]] >= 5
    assert sum(len(r["tasks"]["completed"]) for r in reports) + by_worker[runs["w1"]] == 100
    # the killed worker's run never finished; the others did, as completed
    finished = {e["correlation_id"]: e["data"]["status"] for e in of(evs, "run.finished")}
    assert finished == {runs["w2"]: "completed", runs["w3"]: "completed"}
    # the workspace: every task ran its tool; only the killed one may have run twice
    # (at-least-once execution: w1's orphaned python finished its write after the kill)
    counts = {f.name: len(f.read_text()) for f in (p / "markers").iterdir()}
    assert sorted(counts) == sorted(done)
    assert {t for t, n in counts.items() if n > 1} <= {in_flight}
    assert cli(p, "verify", store=url).returncode == 0


# -- SQLite: several processes on one machine ---------------------------------------------

def sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp}/events.db"


def test_racing_workers_split_the_backlog_without_doubles(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    p = setup(tmp_path, 12, 0.05, url)
    procs = [spawn(p, url, "--id", f"r{i}", "--once") for i in range(3)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    evs = events(p, store=url)
    assert set(completions(evs).values()) == {1} and len(completions(evs)) == 12
    assert sum(r["claimed"] for r in reports) == 12  # a lost race claims nothing
    assert sorted(t for r in reports for t in r["tasks"]["completed"]) == \
        [f"t{i:03}" for i in range(12)]
    assert all(r["status"] == "completed" and r["reason"] == "nothing left to claim"
               for r in reports)


def test_sigterm_releases_the_running_task_for_another_worker(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    p = setup(tmp_path, 1, 30, url)
    proc = spawn(p, url, "--id", "g1")
    assert proc.stderr is not None
    for _ in range(200):
        if "Bash: python" in proc.stderr.readline():
            break
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - t0 < 10  # did not wait for the 30 s tool call
    rep = json.loads(out)
    assert rep["status"] == "stopped" and rep["reason"] == "interrupted (SIGTERM)"
    assert "t000" in rep["tasks"]["released"]
    evs = events(p, store=url)
    released = of(evs, "task.released")
    assert len(released) == 1 and "SIGTERM" in released[0]["data"]["reason"]
    assert [e["data"]["status"] for e in of(evs, "run.finished")] == ["stopped"]
    failed = of(evs, "agent.failed")
    assert [e["data"]["status"] for e in failed] == ["cancelled"]
    # released, not failed: the next worker claims it at once (no lease to wait out)
    (p / "script.yaml").write_text("- marked\n")
    out2 = cli(p, "worker", "--script", "script.yaml", "--once", "--json", store=url)
    assert out2.returncode == 0, out2.stderr
    assert json.loads(out2.stdout)["tasks"]["completed"] == ["t000"]
    assert cli(p, "verify", store=url).returncode == 0


def test_max_tasks_no_tasks_idle_exit_and_bad_input(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    p = setup(tmp_path, 2, 0, url)
    out = cli(p, "worker", "--script", "script.yaml", "--max-tasks", "1", "--json", store=url)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["tasks"]["completed"] == ["t000"] and rep["reason"] == "max tasks reached (1)"
    # another machine's project defines an agent this worker does not know: its task is
    # left to the workers that do, not failed
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".claude" / "agents").mkdir(parents=True)
    (elsewhere / ".claude" / "agents" / "special.md").write_text(
        (p / ".claude" / "agents" / "tester.md").read_text().replace("tester", "special"))
    (elsewhere / "tasks2.yaml").write_text("tasks: [{id: other, title: O, agent: special}]\n")
    assert cli(elsewhere, "task", "import", "tasks2.yaml", store=url).returncode == 0
    out = cli(p, "worker", "--script", "script.yaml", "--once", "--json", store=url)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["tasks"]["completed"] == ["t001"]
    assert "not defined here" in rep["skipped"]["other"]
    t0 = time.monotonic()
    out = cli(p, "worker", "--script", "script.yaml", "--idle-exit", "0.5", "--json",
              store=url)
    assert out.returncode == 0 and 0.5 <= time.monotonic() - t0 < 15, out.stderr
    rep = json.loads(out.stdout)
    assert rep["claimed"] == 0 and rep["reason"] == "idle for 0.5 s: nothing to claim"

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    bad = [
        (("--lease", "2", "--heartbeat", "3"), 2, "--heartbeat 3 s must be positive and "
         "shorter than the lease (2 s)"),
        (("--once", "--idle-exit", "3"), 2, "--once and --idle-exit exclude each other"),
        (("--id", "a b"), 2, "--id 'a b': 1-64 letters"),
    ]
    for args, code, msg in bad:
        out = cli(fresh, "worker", *args, store=sqlite(fresh))
        assert out.returncode == code and msg in out.stderr, (args, out.stderr)
        assert not (fresh / "events.db").exists()  # refused before the store is opened
    out = cli(p, "worker", "--once", "--provider", "script", store=url)
    assert out.returncode == 2 and "--provider script needs --script" in out.stderr
    out = cli(p, "worker", "--once", store="nosuch://x")
    assert out.returncode == 1 and "nosuch" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
