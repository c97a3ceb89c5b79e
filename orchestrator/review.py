"""``orchestrail run --review [AGENT]``: a reviewer agent accepts or rejects each attempt
that completed, before its task is completed.

For every attempt whose session completed, a reviewer session (read-only tools,
``orchestrator.roles``) is started in the task's workspace with the task, its acceptance
criteria, the patch the attempt left (``workspace.diff``) and the agent's final answer. It
must end its answer with one line::

    VERDICT: accept - <one-line reason>
    VERDICT: reject - <what is wrong and what to do>

(``accept``/``accepted``/``reject``/``rejected``, any case; the separator may be ``-``,
``—``, ``:`` or nothing; the last such line counts). No verdict line, or a reviewer
session that did not complete, is a rejection (verdict ``error``): an attempt is never
accepted by default.

The trail: ``review.requested`` (run stream; caused by the attempt's ``task.dispatched``)
-> the reviewer's session (``session-<id>``, caused by ``review.requested``; its
``agent.started`` names ``review_of``) -> ``review.completed`` (run stream; verdict,
reason, the reviewer's answer as ``feedback``, reviewer session id). Accepted: the task's
``task.completed`` result carries ``review``. Rejected: ``task.failed`` carries ``review``
and, while ``--retries`` allow, puts the task back to open; the next attempt's prompt ends
with the reviewer's feedback (``execute.task_prompt``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.definition import AgentDefinition
    from orchestrator.backlog import TaskState
    from orchestrator.execute import Cancel, TaskOutcome
    from orchestrator.roles import RoleProviders
    from orchestrator.runner import Runner

DEFAULT_REVIEWER = "reviewer"
#: characters of the attempt's patch put into the reviewer's prompt
PATCH_CAP = 20_000
FEEDBACK_CAP = 4000
_VERDICT = re.compile(r"^[\s>*_`#-]*verdict[*_`]*\s*:\s*[*_`]*\s*(accept|reject)(?:ed|s)?\b"
                      r"[*_`]*\s*(?:[-—–:]+\s*)?(.*?)\s*$", re.IGNORECASE)


def parse_verdict(text: str) -> tuple[str, str]:
    """``(verdict, reason)`` from a reviewer's answer: the last ``VERDICT:`` line wins;
    ``("error", why)`` when there is none."""
    for line in reversed(text.splitlines()):
        m = _VERDICT.match(line)
        if m:
            verdict = m.group(1).lower()
            return verdict, m.group(2).strip() or ("accepted" if verdict == "accept"
                                                   else "rejected")
    return "error", "the reviewer gave no verdict (no 'VERDICT: accept|reject' line)"


def review_prompt(task: TaskState, outcome: TaskOutcome, patch: str | None) -> str:
    """What the reviewer is asked: the task, its criteria, the patch, the agent's answer."""
    parts = [f"Review the result of task {task.id} ({task.title}), attempt {outcome.attempt}, "
             f"done by the subagent {task.agent or '(routed by the lead)'} in session "
             f"{outcome.session_id}. Your working directory is that task's workspace.",
             "", "The task as given:", task.prompt or task.title]
    if task.acceptance_criteria:
        parts += ["", "Acceptance criteria:",
                  *(f"- {c}" for c in task.acceptance_criteria)]
    files = [f["path"] for f in (outcome.diff or {}).get("files", [])]
    parts += ["", f"Files changed: {', '.join(files) if files else 'none'}"]
    if patch:
        cut = len(patch) > PATCH_CAP
        parts += ["", "The patch (" + (f"first {PATCH_CAP} of {len(patch)} characters; "
                                       "read the files for the rest" if cut else "complete")
                  + "):", "```diff", patch[:PATCH_CAP], "```"]
    elif (outcome.diff or {}).get("commit"):
        parts += ["", f"The change is commit {(outcome.diff or {})['commit']} (git show it)."]
    parts += ["", "The subagent's final answer:", outcome.final_text or "(none)", "",
              "Check the change against the task and every acceptance criterion (read the "
              "files, run the tests if you can). End your answer with exactly one line:",
              "VERDICT: accept - <one-line reason>", "or",
              "VERDICT: reject - <what is wrong and what the next attempt must do>"]
    return "\n".join(parts)


class SessionReviewer:
    """The runner's ``Reviewer``: one reviewer session per completed attempt."""

    def __init__(self, runner: Runner, definition: AgentDefinition,
                 providers: RoleProviders) -> None:
        self.runner = runner
        self.definition = definition
        self.providers = providers
        self._cancels: set[Cancel] = set()

    def cancel(self, reason: str) -> None:
        for handle in list(self._cancels):
            handle.cancel("cancelled", reason)

    async def __call__(self, task: TaskState, outcome: TaskOutcome) -> tuple[bool, str]:
        review = await self.review(task, outcome)
        outcome.review = review
        return review["verdict"] == "accept", review["reason"]

    async def review(self, task: TaskState, outcome: TaskOutcome) -> dict[str, Any]:
        from pathlib import Path

        from agents.loop import Budgets
        from eventstore.model import NewEvent
        from orchestrator.execute import Cancel, _new_id, supervise
        from orchestrator.roles import role_session
        from orchestrator.rolescripts import review_keys

        cfg = self.runner.exec
        assert cfg is not None
        d = self.definition
        sid = _new_id()
        about = {"task_id": task.id, "attempt": outcome.attempt,
                 "session_id": outcome.session_id}
        requested = NewEvent(type="review.requested", actor=cfg.actor,
                             correlation_id=cfg.run_id, causation_id=outcome.dispatched_id,
                             data={**about, "reviewer_session": sid, "agent": d.name,
                                   "definition_hash": d.definition_hash})
        await cfg.store.append(f"run-{cfg.run_id}", [requested])
        workspace = Path((outcome.workspace or {}).get("path") or cfg.project)
        if not workspace.is_dir():
            workspace = cfg.project
        patch = await self._patch(outcome.session_id)
        from orchestrator.workspace import git_info

        # the attempt's commit the reviewer looks at, so `rerun` can start it from there
        git = await git_info(workspace)
        budgets = Budgets(max_turns=d.max_turns or cfg.budgets.max_turns,
                          max_tokens=cfg.budgets.max_tokens,
                          max_cost_usd=cfg.budgets.max_cost_usd,
                          max_wall_seconds=cfg.budgets.max_wall_seconds)
        verdict, reason, text, status = "error", "", "", "failed"
        try:
            provider = self.providers.provider(review_keys(task.id), d.name, "reviewer",
                                               cache_as=f"review:{task.id}")
            session = role_session(
                cfg, d, review_prompt(task, outcome, patch), provider=provider,
                workspace=workspace, session_id=sid, causation_id=requested.id,
                budgets=budgets,
                started_extra={"role": "reviewer", "review_of": about,
                               **({"git": git} if git else {})},
                progress_key=f"{task.id}:review")
        except Exception as exc:  # a script that ran out, a provider that cannot start
            reason = f"the reviewer could not start: {exc}"
        else:
            handle = Cancel()
            self._cancels.add(handle)

            def stop_as(st: str, why: str) -> None:
                session.cancelled_as = (st, why)

            try:
                result, stopped = await supervise(session.run(), stop_as, cfg.timeout,
                                                  handle, None, 60.0)
            finally:
                self._cancels.discard(handle)
            if stopped is not None:
                status, reason = stopped[0], f"the review was stopped: {stopped[1]}"
            else:
                status, text = result.status, result.final_text or ""
                self._count(result)
                if result.ok:
                    verdict, reason = parse_verdict(text)
                else:
                    reason = f"the reviewer session ended {result.status}: " + (
                        result.error or "no verdict")
        review = {"verdict": verdict, "reason": reason[:FEEDBACK_CAP],
                  "feedback": text[:FEEDBACK_CAP], "reviewer_session": sid,
                  "agent": d.name, "attempt": outcome.attempt, "status": status}
        await cfg.store.append(f"run-{cfg.run_id}", [NewEvent(
            type="review.completed", actor=cfg.actor, correlation_id=cfg.run_id,
            causation_id=requested.id, data={**about, **review})])
        if self.runner.progress is not None:
            self.runner.progress.note(f"review of {task.id} (attempt {outcome.attempt}): "
                                      f"{verdict} - {reason[:120]}")
        return review

    async def _patch(self, session_id: str | None) -> str | None:
        """The patch the attempt's ``workspace.diff`` recorded (the outcome keeps only the
        file list)."""
        cfg = self.runner.exec
        if session_id is None or cfg is None:
            return None
        patch = None
        async for ev in cfg.store.read_stream(f"session-{session_id}"):
            if ev.type == "workspace.diff" and isinstance(ev.data.get("patch"), str):
                patch = ev.data["patch"]
        return patch

    def _count(self, result: Any) -> None:
        """The reviewer's tokens and cost count toward the run's totals and budgets."""
        self.runner.report.spend(result.usage, result.cost_usd, result.turns)
