"""`orchestrail run --lead` and `--review` as a user runs them: real processes, real git
repositories, a real SQLite file; the script provider (and once the Anthropic wire-protocol
fake) standing in for the model.

What is asserted is the trail's structure: lead session -> tool.requested(Agent) ->
task.dispatched (caused by it) -> child session (parent_session = the lead) ->
review.requested -> reviewer session -> review.completed -> task.completed/failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import ORCHESTRAIL, ROOT
from tests.fakes.model_servers import AnthropicServer, Script, text, tool_use
from tests.integration.test_run_cli import TESTER, cli, events, gone, interrupt_when, of

REVIEWER = (ROOT / ".claude" / "agents" / "reviewer.md").read_text()
LEAD = (ROOT / ".claude" / "agents" / "orchestrator.md").read_text()

TASKS = """\
    tasks:
      - {id: a, title: Write a, agent: tester, acceptance_criteria: ["a.txt says hello"]}
      - {id: b, title: Write b, depends_on: [a]}
    """


def project(tmp: Path, script: str, tasks: str = TASKS,
            more_agents: dict[str, str] | None = None) -> Path:
    p = tmp / "proj"
    agents = p / ".claude" / "agents"
    agents.mkdir(parents=True)
    for name, body in (more_agents or {}).items():
        (agents / f"{name}.md").write_text(body)
    (agents / "tester.md").write_text(TESTER)
    (agents / "reviewer.md").write_text(REVIEWER)
    (agents / "orchestrator.md").write_text(LEAD)
    (p / ".gitignore").write_text(".orchestrail/\n__pycache__/\n")
    (p / "tasks.yaml").write_text(textwrap.dedent(tasks))
    (p / "script.yaml").write_text(textwrap.dedent(script))
    subprocess.run(["git", "init", "-q", str(p)], check=True)
    subprocess.run(["git", "-C", str(p), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(p), "-c", "user.name=t", "-c",
                    "user.email=t@example.com", "commit", "-qm", "init"], check=True)
    out = cli(p, "task", "import", "tasks.yaml")
    assert out.returncode == 0, out.stderr
    return p


def run(p: Path, *args: str, code: int = 0) -> dict[str, Any]:
    out = cli(p, "run", "--script", "script.yaml", "--json", "--retry-delay", "0", *args)
    assert out.returncode == code, (out.stdout, out.stderr)
    return dict(json.loads(out.stdout))


def first(evs: list[dict[str, Any]], stream: str) -> dict[str, Any]:
    return next(e for e in evs if e["stream"] == stream)


def agent_calls(evs: list[dict[str, Any]], sid: str) -> list[dict[str, Any]]:
    return [e for e in of(evs, "tool.requested")
            if e["stream"] == f"session-{sid}" and e["data"]["tool"] == "Agent"]


LEAD_AND_REVIEW = """\
    tasks:
      _lead:
        - tool_calls:
            - name: Agent
              input: {subagent_type: tester, description: "a: write a.txt",
                      prompt: "Create a.txt containing hello."}
        - match: "Task a completed"
          tool_calls:
            - name: Agent
              input: {subagent_type: tester, description: "b: write b.txt",
                      prompt: "Create b.txt next to a.txt."}
        - match: "Task b completed"
          text: "a and b are done."
      a:
        - tool_calls: [{name: Write, input: {file_path: a.txt, content: "helo\\n"}}]
        - "wrote a.txt"
        - match: "Their feedback"
          tool_calls: [{name: Write, input: {file_path: a.txt, content: "hello\\n"}}]
        - "fixed the typo in a.txt"
      b:
        - tool_calls: [{name: Write, input: {file_path: b.txt, content: "b\\n"}}]
        - "wrote b.txt"
      _review.a:
        - tool_calls: [{name: Read, input: {file_path: a.txt}}]
        - "a.txt says helo.\\nVERDICT: reject - a.txt must say hello, not helo"
        - "VERDICT: accept - a.txt says hello"
      _review:
        - "VERDICT: accept - looks right"
    """


def test_lead_dispatches_through_agent_calls_and_reviews_each_result(tmp_path: Path) -> None:
    p = project(tmp_path, LEAD_AND_REVIEW)
    rep = run(p, "--lead", "--review")
    assert rep["status"] == "completed", rep
    assert sorted(rep["tasks"]["completed"]) == ["a", "b"]
    evs = events(p)
    run_id = rep["run_id"]
    lead = of(evs, "lead.started")[0]
    lead_sid = lead["data"]["session_id"]
    assert lead["data"]["agent"] == "orchestrator" and lead["data"]["tasks"] == ["a", "b"]
    lead_start = first(evs, f"session-{lead_sid}")
    assert lead_start["type"] == "agent.started" and lead_start["causation_id"] == lead["id"]
    assert lead_start["data"]["allowed_tools"][0] == "Agent"
    assert not {"Write", "Edit", "Bash"} & set(lead_start["data"]["allowed_tools"])
    # the lead saw the backlog: ids, agents (b has none), criteria
    prompt = lead_start["data"]["prompt"]
    assert "- a [ready] agent: tester" in prompt and "- b [blocked] agent: (none)" in prompt
    assert "a.txt says hello" in prompt
    calls = agent_calls(evs, lead_sid)
    assert len(calls) == 2
    dispatched = of(evs, "task.dispatched")
    # a: two attempts (the first rejected), both caused by the lead's first Agent call
    assert [(d["data"]["task_id"], d["data"]["attempt"]) for d in dispatched] == [
        ("a", 1), ("a", 2), ("b", 1)]
    for d, call in zip(dispatched, [calls[0], calls[0], calls[1]], strict=True):
        assert d["causation_id"] == call["id"]
        assert d["data"]["routed_by"] == "lead" and d["data"]["parent_session"] == lead_sid
        child = first(evs, f"session-{d['data']['session_id']}")
        assert child["type"] == "agent.started" and child["causation_id"] == d["id"]
        assert child["data"]["parent_session"] == lead_sid and child["data"]["depth"] == 1
        assert child["correlation_id"] == run_id
        assert child["data"]["workspace"] != str(p)  # its own worktree
    # b had no agent: the lead routed it to tester
    assert dispatched[2]["data"]["agent"] == "tester"
    # the second attempt of a got the reviewer's feedback in its prompt
    second = first(evs, f"session-{dispatched[1]['data']['session_id']}")
    assert "a.txt must say hello, not helo" in second["data"]["prompt"]
    # reviews: requested (caused by the dispatch) -> reviewer session -> completed
    requested, completed = of(evs, "review.requested"), of(evs, "review.completed")
    assert [r["data"]["verdict"] for r in completed] == ["reject", "accept", "accept"]
    for req, done, d in zip(requested, completed, dispatched, strict=True):
        assert req["causation_id"] == d["id"] and done["causation_id"] == req["id"]
        rsid = req["data"]["reviewer_session"]
        rstart = first(evs, f"session-{rsid}")
        assert rstart["causation_id"] == req["id"] and rstart["data"]["agent"] == "reviewer"
        assert rstart["data"]["review_of"]["session_id"] == d["data"]["session_id"]
        assert "Write" not in rstart["data"]["allowed_tools"]
        # the attempt's commit the reviewer looked at, for `rerun` to start it from
        assert len(rstart["data"]["git"]["commit"]) == 40
        assert done["data"]["reviewer_session"] == rsid
    assert "+helo" in first(evs, f"session-{requested[0]['data']['reviewer_session']}")[
        "data"]["prompt"]  # the patch was shown to the reviewer
    # the task stream: a failed once with the review, then completed with the review
    a_failed = [e for e in of(evs, "task.failed") if e["stream"] == "task-a"]
    assert len(a_failed) == 1 and a_failed[0]["data"]["retry"] is True
    assert a_failed[0]["data"]["review"]["verdict"] == "reject"
    a_done = next(e for e in of(evs, "task.completed") if e["stream"] == "task-a")
    assert a_done["data"]["result"]["review"]["verdict"] == "accept"
    # the lead's tool results: the answer, the verdict and the backlog as it is now
    results = [e for e in of(evs, "tool.completed") if e["stream"] == f"session-{lead_sid}"]
    assert "Review by reviewer: accept - a.txt says hello" in results[0]["data"]["output"]
    assert "fixed the typo" in results[0]["data"]["output"]
    assert "ready: b (no agent: route it)" in results[0]["data"]["output"]
    assert not results[1]["data"]["is_error"]
    # the work is on the task branches
    show = subprocess.run(["git", "-C", str(p), "show", f"orchestrail/{run_id}/a:a.txt"],
                          capture_output=True, text=True)
    assert show.stdout == "hello\n", show.stderr
    # replay shows the reviews and the lead's children; the trail verifies
    replay = cli(p, "replay", run_id, "--json")
    assert replay.returncode == 0, replay.stderr
    doc = json.loads(replay.stdout)
    tasks = {t["id"]: t for t in doc["tasks"]}
    assert [r["verdict"] for r in tasks["a"]["reviews"]] == ["reject", "accept"]
    sessions = {s["id"]: s for s in doc["sessions"]}
    assert len(sessions[lead_sid]["children"]) == 3
    assert cli(p, "verify").returncode == 0


REJECT_ALWAYS = """\
    tasks:
      a:
        - tool_calls: [{name: Write, input: {file_path: a.txt, content: "x\\n"}}]
        - "done"
        - tool_calls: [{name: Write, input: {file_path: a.txt, content: "y\\n"}}]
        - "done again"
      _review:
        - "VERDICT: reject - not what was asked"
        - "No verdict here, just musings."
    """


def test_review_rejects_until_retries_run_out_then_the_task_fails(tmp_path: Path) -> None:
    p = project(tmp_path, REJECT_ALWAYS,
                tasks="tasks:\n  - {id: a, title: Write a, agent: tester}\n")
    rep = run(p, "--review", "--retries", "1", code=1)
    assert rep["status"] == "failed" and "a" in rep["tasks"]["failed"]
    assert "rejected by review" in rep["tasks"]["failed"]["a"]
    evs = events(p)
    verdicts = [e["data"]["verdict"] for e in of(evs, "review.completed")]
    assert verdicts == ["reject", "error"]  # no verdict line is a rejection, never a pass
    failed = [e["data"] for e in of(evs, "task.failed")]
    assert [f["retry"] for f in failed] == [True, False]
    assert failed[-1]["review"]["verdict"] == "error"
    assert not of(evs, "task.completed")


def test_bad_input_lead_and_review(tmp_path: Path) -> None:
    p = project(tmp_path, "tasks:\n  a: [done]\n  b: [done]\n")
    # b has no agent: the fixed dispatcher refuses it and says how to route it
    out = cli(p, "run", "--script", "script.yaml")
    assert out.returncode == 2 and "task 'b' has no agent" in out.stderr
    assert "--lead" in out.stderr
    # the lead's and the reviewer's scripts are checked before anything is written
    out = cli(p, "run", "--script", "script.yaml", "--lead", "--review")
    assert out.returncode == 2, out.stderr
    assert "no section for the lead" in out.stderr and "_lead" in out.stderr
    assert "no section for the reviewer of task a" in out.stderr
    out = cli(p, "run", "--script", "script.yaml", "--lead", "--parallel", "2")
    assert out.returncode == 2 and "drop --parallel 2" in out.stderr
    out = cli(p, "run", "--script", "script.yaml", "--lead", "nobody")
    assert out.returncode == 2 and "--lead nobody: no agent 'nobody'" in out.stderr
    out = cli(p, "run", "--script", "script.yaml", "--review", "tester", "--only", "a")
    assert out.returncode == 2 and "reviewer" in out.stderr
    # a lead without the Agent tool cannot lead
    out = cli(p, "run", "--script", "script.yaml", "--lead", "reviewer")
    assert out.returncode == 2 and "do not include Agent" in out.stderr
    assert not of(events(p), "run.started")


LEAD_ERRORS = """\
    tasks:
      _lead:
        - tool_calls:
            - name: Agent
              input: {subagent_type: tester, description: "b first", prompt: "Do b."}
        - match: "not ready"
          tool_calls:
            - name: Agent
              input: {subagent_type: reviewer, description: "a: wrong agent", prompt: "a"}
        - match: "assigned to 'tester'"
          tool_calls:
            - name: Agent
              input: {subagent_type: tester, description: "tidy up",
                      prompt: "Write notes.txt with a summary."}
        - "Stopping here."
    default:
      - tool_calls: [{name: Write, input: {file_path: notes.txt, content: "n\\n"}}]
      - "wrote notes"
    """


def test_lead_mistakes_are_tool_errors_and_unnamed_work_becomes_an_adhoc_task(
        tmp_path: Path) -> None:
    p = project(tmp_path, LEAD_ERRORS)
    rep = run(p, "--lead", code=1)
    assert rep["status"] == "failed"  # a and b were never done
    assert sorted(rep["tasks"]["not_run"]) == ["a", "b"]
    evs = events(p)
    lead_sid = of(evs, "lead.started")[0]["data"]["session_id"]
    results = [e["data"] for e in of(evs, "tool.completed")
               if e["stream"] == f"session-{lead_sid}"]
    assert results[0]["is_error"] and "task b is not ready: it waits for a" in \
        results[0]["output"]
    assert results[1]["is_error"] and "assigned to 'tester'" in results[1]["output"]
    assert not results[2]["is_error"]
    created = [e for e in of(evs, "task.created") if "ad-hoc" in e["data"]["labels"]]
    assert len(created) == 1
    adhoc = created[0]
    assert adhoc["data"]["agent"] == "tester" and adhoc["data"]["source"]["kind"] == "lead"
    assert rep["tasks"]["completed"] == [adhoc["stream"][len("task-"):]]
    d = of(evs, "task.dispatched")
    assert len(d) == 1 and d[0]["causation_id"] == agent_calls(evs, lead_sid)[2]["id"]


def test_lead_on_the_anthropic_wire_protocol(tmp_path: Path) -> None:
    """The lead and its subagents through the real SDK against the scripted server,
    routed by system prompt (lead versus tester)."""
    p = project(tmp_path, "tasks: {}\n",
                tasks="tasks:\n  - {id: a, title: Write a, agent: tester}\n")
    lead_turns = [tool_use("Agent", {"subagent_type": "tester", "description": "a: write",
                                     "prompt": "Create a.txt with hello."}),
                  text("Task a is done.")]
    child_turns = [tool_use("Write", {"file_path": "a.txt", "content": "hello\n"}),
                   text("a.txt written")]

    def route(req: dict[str, Any]) -> dict[str, Any]:
        system = json.dumps(req.get("system"))
        turns = lead_turns if "# Orchestrator" in system else child_turns
        return turns.pop(0)

    script = Script(turns=[route] * 4, fallback=text("unexpected"))
    with AnthropicServer(script) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRAIL_")}
        env.update(ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY="test-key")
        out = subprocess.run([ORCHESTRAIL, "run", "--provider", "anthropic", "--lead",
                              "--json", "--model", "claude-sonnet-4-5"], cwd=p,
                             capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert json.loads(out.stdout)["tasks"]["completed"] == ["a"]
    assert len(script.requests) == 4 and not lead_turns and not child_turns
    # the lead was offered Agent and read-only tools only; the tool result came back
    lead_reqs = [r for r in script.requests if "# Orchestrator" in json.dumps(r["system"])]
    assert {t["name"] for t in lead_reqs[0]["tools"]} == {"Agent", "Read", "Glob", "Grep"}
    result = lead_reqs[1]["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and "Task a completed" in json.dumps(result)
    evs = events(p)
    lead_sid = of(evs, "lead.started")[0]["data"]["session_id"]
    d = of(evs, "task.dispatched")[0]
    assert d["causation_id"] == agent_calls(evs, lead_sid)[0]["id"]


def story_project(tmp: Path) -> Path:
    """The demo's scratch project (examples/demo.sh: story 4.2 imported, the review task
    added), with the lead's definition."""
    p = tmp / "story"
    agents = p / ".claude" / "agents"
    agents.mkdir(parents=True)
    for name in ("backend-implementer", "reviewer", "orchestrator"):
        (agents / f"{name}.md").write_text(
            (ROOT / ".claude" / "agents" / f"{name}.md").read_text())
    story = ROOT / "examples" / "stories" / "story-4.2-event-store-backend-selection.md"
    (p / "story.md").write_bytes(story.read_bytes())
    (p / ".gitignore").write_text(".orchestrail/\n__pycache__/\n.pytest_cache/\n")
    subprocess.run(["git", "init", "-q", str(p)], check=True)
    subprocess.run(["git", "-C", str(p), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(p), "-c", "user.name=t", "-c",
                    "user.email=t@example.com", "commit", "-qm", "init"], check=True)
    for args in (("task", "import", "story.md", "--agent", "backend-implementer",
                  "--sequential"),
                 ("task", "add", "Review the event store backends", "--id",
                  "story-4-2.review", "--agent", "reviewer", "--depends-on", "story-4-2.t6",
                  "--prompt", "Review the work on story 4.2 (git log, the store/ package), "
                  "run the tests, report problems.")):
        out = cli(p, *args)
        assert out.returncode == 0, out.stderr
    return p


def test_the_seed_story_run_by_the_lead_with_reviews(tmp_path: Path) -> None:
    """The demo's story, but in the seed's orchestrator mode: the lead dispatches the seven
    tasks one at a time (examples/scripts/story-4.2.yaml, `_lead:`), a reviewer judges
    each result, every dispatch is caused by one of the lead's Agent calls."""
    p = story_project(tmp_path)
    out = cli(p, "run", "--script", str(ROOT / "examples" / "scripts" / "story-4.2.yaml"),
              "--lead", "--review", "--json", timeout=300)
    assert out.returncode == 0, (out.stdout, out.stderr[-3000:])
    rep = json.loads(out.stdout)
    order = [f"story-4-2.t{i}" for i in range(1, 7)] + ["story-4-2.review"]
    assert rep["tasks"]["completed"] == order
    evs = events(p)
    lead_sid = of(evs, "lead.started")[0]["data"]["session_id"]
    calls = agent_calls(evs, lead_sid)
    dispatched = of(evs, "task.dispatched")
    assert [d["data"]["task_id"] for d in dispatched] == order
    assert [d["causation_id"] for d in dispatched] == [c["id"] for c in calls]
    assert [e["data"]["verdict"] for e in of(evs, "review.completed")] == ["accept"] * 7
    final = [e for e in of(evs, "agent.finished") if e["stream"] == f"session-{lead_sid}"]
    assert final[0]["data"]["final_text"].startswith("All seven tasks of story 4.2")


SLOW_REVIEWER = """\
---
name: slow-reviewer
description: Reviews slowly.
tools: Read, Bash(sleep:*)
---
You review.
"""


def test_ctrl_c_during_a_lead_dispatch_and_during_a_review(tmp_path: Path) -> None:
    p = project(tmp_path, """\
        tasks:
          _lead:
            - tool_calls:
                - name: Agent
                  input: {subagent_type: tester, description: "a: slow", prompt: "Sleep."}
            - "never reached"
          a:  # sleeps only when the lead asks it to
            - {match: "Sleep", tool_calls: [{name: Bash, input: {command: "sleep 58.3"}}]}
            - "done"
          _review:
            - tool_calls: [{name: Bash, input: {command: "sleep 57.1"}}]
            - "VERDICT: accept"
        """, tasks="tasks:\n  - {id: a, title: Slow, agent: tester}\n")
    (p / ".claude" / "agents" / "slow-reviewer.md").write_text(SLOW_REVIEWER)
    # 1. the lead waits for its subagent: both sessions end cancelled, the task is released
    proc, out, _, _ = interrupt_when(p, "Bash: sleep 58.3", "--lead")
    assert proc.returncode == 130
    rep = json.loads(out)
    assert rep["status"] == "cancelled" and "a" in rep["tasks"]["released"]
    evs = events(p)
    lead_sid = of(evs, "lead.started")[0]["data"]["session_id"]
    ended = {e["stream"]: e["data"]["status"] for e in of(evs, "agent.failed")}
    child = of(evs, "task.dispatched")[0]["data"]["session_id"]
    assert ended == {f"session-{lead_sid}": "cancelled", f"session-{child}": "cancelled"}
    assert of(evs, "run.finished")[-1]["data"]["status"] == "cancelled"
    # 2. Ctrl-C while the reviewer works: the task is released, not failed
    proc, out, _, _ = interrupt_when(p, "Bash: sleep 57.1", "--review", "slow-reviewer")
    assert proc.returncode == 130
    rep = json.loads(out)
    assert "a" in rep["tasks"]["released"] and not rep["tasks"]["failed"]
    evs = events(p)
    review = of(evs, "review.completed")[-1]["data"]
    assert review["verdict"] == "error" and review["status"] == "cancelled"
    assert not of(evs, "task.failed") and not of(evs, "task.completed")
    listed = json.loads(cli(p, "task", "list", "--json").stdout)
    assert listed[0]["status"] == "ready"
    # 3. Ctrl-C while the reviewer judges an attempt the lead dispatched: the review ends
    # first (task released), then the lead
    (p / "script.yaml").write_text((p / "script.yaml").read_text().replace(
        'prompt: "Sleep."', 'prompt: "Do it."'))
    proc, out, _, _ = interrupt_when(p, "Bash: sleep 57.1", "--lead", "--review", "slow-reviewer")
    assert proc.returncode == 130
    rep = json.loads(out)
    assert "a" in rep["tasks"]["released"] and rep["status"] == "cancelled"
    evs = events(p)
    run_id = rep["run_id"]
    mine = [e for e in evs if e["correlation_id"] == run_id]
    assert of(mine, "review.completed")[-1]["data"]["status"] == "cancelled"
    sessions = {e["stream"] for e in mine if e["stream"].startswith("session-")}
    ended = {e["stream"] for e in of(mine, "agent.failed") + of(mine, "agent.finished")}
    assert sessions == ended and len(sessions) == 3  # lead, attempt, reviewer: all ended
    assert [e["type"] for e in mine][-2:] == ["agent.failed", "run.finished"]  # lead last
    assert gone("sleep 58.3", "sleep 57.1") == []
    assert cli(p, "verify").returncode == 0


DELEGATOR = """\
---
name: delegator
description: Delegates further.
tools: Agent, Read
---
You delegate.
"""


#: the lead -> a (delegator) -> an ad-hoc task (delegator, depth 2), whose own Agent call
#: the depth limit refuses
DEEP_SCRIPT = """\
    tasks:
      _lead:
        - tool_calls:
            - {name: Agent, input: {subagent_type: delegator, description: "a: go",
                                    prompt: "Go."}}
        - "done"
      a:
        - tool_calls:
            - {name: Agent, input: {subagent_type: delegator, description: "help me",
                                    prompt: "Help with the notes."}}
        - "a done with help"
    default:
      - tool_calls:
          - {name: Agent, input: {subagent_type: delegator, description: "deeper",
                                  prompt: "Deeper still."}}
      - "gave up going deeper"
    """
DEEP_TASKS = "tasks:\n  - {id: a, title: A, agent: delegator}\n"


def test_a_subagent_delegates_further_down_to_the_depth_limit(tmp_path: Path) -> None:
    p = project(tmp_path, DEEP_SCRIPT, tasks=DEEP_TASKS, more_agents={"delegator": DELEGATOR})
    rep = run(p, "--lead")
    evs = events(p)
    lead_sid = of(evs, "lead.started")[0]["data"]["session_id"]
    d = of(evs, "task.dispatched")
    assert [x["data"]["depth"] for x in d] == [1, 2]
    child, grandchild = (x["data"]["session_id"] for x in d)
    assert d[0]["data"]["parent_session"] == lead_sid
    assert d[1]["data"]["parent_session"] == child  # the child's own Agent call
    assert d[1]["causation_id"] == agent_calls(evs, child)[0]["id"]
    adhoc = d[1]["data"]["task_id"]
    assert rep["tasks"]["completed"] == [adhoc, "a"]
    # the grandchild's Agent call was refused: depth limit 2 (the lead is 0)
    refused = [e["data"] for e in of(evs, "tool.completed")
               if e["stream"] == f"session-{grandchild}"]
    assert refused[0]["is_error"] and "depth limit reached (2)" in refused[0]["output"]
    assert len(d) == 2


def test_a_run_budget_stops_the_lead_after_its_call(tmp_path: Path) -> None:
    p = project(tmp_path, """\
        usage: {input_tokens: 1000, output_tokens: 10}
        tasks:
          _lead:
            - tool_calls:
                - {name: Agent, input: {subagent_type: tester, description: "a: go",
                                        prompt: "Go."}}
            - tool_calls:
                - {name: Agent, input: {subagent_type: tester, description: "b: go",
                                        prompt: "Go."}}
            - "done"
        default: ["did it"]
        """)
    rep = run(p, "--lead", "--run-max-tokens", "1500", code=1)
    assert rep["status"] == "budget_exceeded:tokens", rep
    assert rep["tasks"]["completed"] == ["a"] and rep["tasks"]["not_run"] == ["b"]
    evs = events(p)
    assert len(of(evs, "task.dispatched")) == 1
    lead_sid = of(evs, "lead.started")[0]["data"]["session_id"]
    lead_end = [e["data"] for e in of(evs, "agent.failed")
                if e["stream"] == f"session-{lead_sid}"]
    assert lead_end and lead_end[0]["status"] == "cancelled"
    assert "run budget (tokens)" in lead_end[0]["error"]
    assert of(evs, "run.stopping")[0]["data"]["status"] == "budget_exceeded:tokens"
