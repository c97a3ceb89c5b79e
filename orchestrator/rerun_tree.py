"""``rerun`` of sessions that delegated (the ``Agent`` tool): a lead of ``run --lead`` and
subagents that delegate further.

The root session runs again as any other (``orchestrator.rerun.rerun_session``), with a
``delegate``: each ``Agent`` call the re-executed session makes is served by running the
recorded child session again, the child found **by cause, not position**: the recorded
``task.dispatched`` whose ``parent_session`` is the recorded caller and whose
``tool_use_id`` is the call's (the replay provider serves the recorded ``tool_use_id``s),
or, for delegation outside ``orchestrail run``, the child whose ``agent.started`` is
caused by the caller's ``tool.requested`` of that id. The child runs in its own scratch
workspace built from the recorded start (a task's worktree base commit), gets the same
delegate (so it can delegate further), and its reviews (``review.requested`` naming it)
run again after it, each reviewer from the commit it recorded.

What the caller gets back is the recorded tool result with the recorded child session
ids replaced by the new ones and the recorded final answer by the new one (an error when
the recorded call was one). The request fingerprint holds a tool result's id and error
flag only, so the child's answer is compared here: a different answer is a divergence at
the caller's level (kind ``child_result``). A child that diverges stops the whole tree:
the caller's next model request is refused (kind ``child``), and the report's divergence
is the deepest one, the child's own.

The new run has the recorded structure: ``lead.started`` (run stream) -> the lead's
session -> ``tool.requested(Agent)`` -> ``task.dispatched`` (caused by it, naming the new
caller and child) -> the child session (``parent_session``, ``rerun_of``) ->
``review.requested`` -> reviewer session -> ``review.completed`` -> ``task.completed`` /
``task.failed``, so ``replay`` shows it like the original and ``diff`` pairs sessions by
lineage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.rerun import RerunError

if TYPE_CHECKING:
    from agents.tools.base import DelegateRequest
    from eventstore.base import EventStore
    from eventstore.model import RecordedEvent
    from orchestrator.fold import RunState, Session
    from orchestrator.rerun import RerunOptions


@dataclass
class Recorded:
    """What the recording says about who was started by what."""

    #: (recorded caller session, tool_use_id) -> the recorded dispatches it caused, in order
    dispatches: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    #: recorded reviewed session -> the review events' data (requested, completed)
    reviews: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: recorded task id -> its terminal event type and data in the recording
    task_end: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    lead: dict[str, Any] | None = None
    events: dict[str, list[RecordedEvent]] = field(default_factory=dict)


async def read_recording(store: EventStore, state: RunState) -> Recorded:
    """The run stream's dispatch, review and task events, and every session's stream."""
    from eventstore.model import Query

    rec = Recorded()
    reviews: dict[str, dict[str, Any]] = {}
    async for ev in store.read(Query(correlation_id=state.run_id,
                                     types=("task.*", "review.*", "lead.started"))):
        d = ev.data if isinstance(ev.data, dict) else {}
        if ev.type == "lead.started":
            rec.lead = d
        elif ev.type == "task.dispatched" and d.get("parent_session") and d.get("tool_use_id"):
            key = (str(d["parent_session"]), str(d["tool_use_id"]))
            rec.dispatches.setdefault(key, []).append(d)
        elif ev.type in ("review.requested", "review.completed"):
            rs = str(d.get("reviewer_session"))
            if rs not in reviews:
                reviews[rs] = {}
                rec.reviews.setdefault(str(d.get("session_id")), []).append(reviews[rs])
            reviews[rs][ev.type[7:]] = d
        elif ev.type in ("task.completed", "task.failed"):
            tid = d.get("task_id") or (ev.stream[5:] if ev.stream.startswith("task-") else None)
            if isinstance(tid, str):
                rec.task_end[tid] = (ev.type, {"task_id": tid, "error": d.get("error"),
                                               "rerun_of": {"run_id": state.run_id,
                                                            "event_id": str(ev.id)}})
    for sid in state.sessions:
        rec.events[sid] = [ev async for ev in store.read_stream(f"session-{sid}")]
    # delegation outside `orchestrail run`: the child's agent.started is caused by the
    # caller's tool.requested
    requested = {ev.id: (sid, ev.data.get("tool_use_id"))
                 for sid, evs in rec.events.items() for ev in evs
                 if ev.type == "tool.requested" and isinstance(ev.data, dict)}
    dispatched = {str(d["session_id"]) for ds in rec.dispatches.values() for d in ds}
    for s in state.sessions.values():
        if not s.parent_session or s.id in dispatched or not rec.events.get(s.id):
            continue
        first = rec.events[s.id][0]
        caller = requested.get(first.causation_id or "")
        if caller and caller[0] == s.parent_session and caller[1]:
            rec.dispatches.setdefault((caller[0], str(caller[1])), []).append(
                {"session_id": s.id, "parent_session": s.parent_session,
                 "tool_use_id": caller[1], "direct": True})
    return rec


def tree_roots(state: RunState, rec: Recorded) -> list[Session]:
    """The sessions the rerun starts itself: not children, not reviews of children (a
    child's reviews run again after it); a lead run's lead first."""
    from orchestrator.rerun import _roots

    children = {s.id for s in state.sessions.values() if s.parent_session}
    reviewers = {str(r.get("requested", r.get("completed", {})).get("reviewer_session"))
                 for sid, rs in rec.reviews.items() if sid in children for r in rs}
    return [s for s in _roots(state) if s.id not in reviewers]


def check_tree(state: RunState, rec: Recorded) -> None:
    """Every child must be findable from its caller's call (bad input otherwise)."""
    matched = {str(d["session_id"]) for ds in rec.dispatches.values() for d in ds}
    lost = [s.id for s in state.sessions.values() if s.parent_session and s.id not in matched]
    if lost:
        raise RerunError(f"subagent session(s) {', '.join(lost)} name a parent session but "
                         "no recorded Agent call of it started them (no task.dispatched with "
                         "its tool_use_id, no agent.started caused by its tool.requested); "
                         "the delegation cannot be executed again")


class TreeRerun:
    """The delegate of a rerun: runs recorded children again, records the structure."""

    def __init__(self, store: EventStore, state: RunState, rec: Recorded,
                 opts: RerunOptions, run_id: str, origin: str,
                 report: dict[str, Any]) -> None:
        self.store = store
        self.state = state
        self.rec = rec
        self.opts = opts
        self.run_id = run_id
        self.origin = origin
        self.report = report
        #: new session id -> the recorded session it is a rerun of
        self.recorded_of: dict[str, str] = {}
        #: recorded session id -> new session id (what tool results name)
        self.new_of: dict[str, str] = {}
        self.divergence: dict[str, Any] | None = None
        self.reviews_rerun = 0

    def halted(self) -> dict[str, Any] | None:
        return self.divergence

    def aliases(self) -> list[str]:
        """Session ids that name the same session in the recording and the rerun."""
        return [x for pair in self.new_of.items() for x in pair]

    async def append(self, type_: str, data: dict[str, Any], causation: str | None) -> str:
        from eventstore.model import NewEvent

        ev = NewEvent(type=type_, actor="orchestrail:rerun", correlation_id=self.run_id,
                      causation_id=causation, data=data)
        await self.store.append(f"run-{self.run_id}", [ev])
        return str(ev.id)

    async def start_lead(self, lead: Session, new_sid: str) -> str | None:
        """``lead.started`` of the new run (when the recording has one); its id."""
        if self.rec.lead is None or self.rec.lead.get("session_id") != lead.id:
            return None
        return await self.append("lead.started", {
            **self.rec.lead, "session_id": new_sid,
            "rerun_of": {"run_id": self.origin, "session_id": lead.id}}, None)

    async def session(self, recorded: Session, new_sid: str, scratch_kw: dict[str, Any],
                      via: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one recorded session again (any depth) in a fresh scratch workspace."""
        from orchestrator.rerun import rerun_in_scratch

        self.recorded_of[new_sid] = recorded.id
        self.new_of[recorded.id] = new_sid
        part = await rerun_in_scratch(
            self.store, self.state, recorded, self.rec.events[recorded.id], self.opts,
            self.run_id, self.origin, self.report,
            session_kw={"session_id": new_sid, **scratch_kw}, tree=self)
        part["via"] = via  # what started it: an Agent call, a review (None: a root)
        if part["divergence"] is not None and self.divergence is None:
            self.divergence = part["divergence"]
        return part

    async def delegate(self, req: DelegateRequest) -> str:
        """One ``Agent`` call of a re-executed session: its recorded children again."""
        from agents.tools.base import ToolError
        from orchestrator.execute import _new_id

        caller = self.recorded_of.get(req.parent_session)
        rec_caller = self.state.sessions.get(caller or "")
        if rec_caller is None:
            raise ToolError("rerun: the calling session is not one of the recording")
        rec_call = rec_caller.tool_calls.get(req.tool_use_id)
        dispatches = self.rec.dispatches.get((rec_caller.id, req.tool_use_id), [])
        if self.divergence is not None:
            raise ToolError("rerun stopped: a subagent diverged")
        answer: str | None = None
        rec_answer: str | None = None
        for d in dispatches:
            child = self.state.sessions[str(d["session_id"])]
            new_sid = _new_id()
            cause = req.requested_event_id or None
            if not d.get("direct"):
                cause = await self.append("task.dispatched", {
                    **{k: v for k, v in d.items() if k != "resumed"},
                    "session_id": new_sid, "parent_session": req.parent_session,
                    "rerun_of": {"run_id": self.origin, "session_id": child.id}}, cause)
            part = await self.session(child, new_sid, {
                "parent_session": req.parent_session, "depth": req.depth,
                "causation_id": cause, "delegate": self.delegate,
                "max_depth": int((self.rec.lead or {}).get("max_depth") or 2)},
                via={"kind": "agent_call", "caller": rec_caller.id,
                     "tool_use_id": req.tool_use_id, "depth": req.depth,
                     "task_id": d.get("task_id"), "attempt": d.get("attempt")})
            if self.divergence is not None:
                raise ToolError(f"rerun stopped: subagent session {new_sid} diverged")
            answer, rec_answer = part.get("final_text"), child.final_text
            if answer != rec_answer:
                self.divergence = {
                    "session": rec_caller.id, "agent": rec_caller.agent,
                    "turn": rec_call.turn if rec_call else None, "kind": "child_result",
                    "tool_use_id": req.tool_use_id, "tool": "Agent",
                    "child_session": child.id, "recorded": rec_answer, "now": answer,
                    "message": f"the Agent call {req.tool_use_id} got another answer from "
                               f"subagent session {child.id} ({child.agent}) than recorded"}
                raise ToolError("rerun stopped: the subagent's answer differs")
            for review in self.rec.reviews.get(child.id, []):
                await self._review(review, child, new_sid, cause)
                if self.divergence is not None:
                    raise ToolError("rerun stopped: a review diverged")
            tid = d.get("task_id")
            end = self.rec.task_end.get(str(tid)) if tid else None
            if end is not None and d is dispatches[-1]:
                await self.append(end[0], {k: v for k, v in end[1].items() if v is not None},
                                   cause)
        text = rec_call.output if rec_call is not None else None
        if text is None:
            text = answer or ""
        for old, new in self.new_of.items():
            text = text.replace(old, new)
        if rec_answer and answer is not None:
            text = text.replace(rec_answer, answer)
        if rec_call is not None and rec_call.is_error:
            raise ToolError(text)
        return text

    async def _review(self, review: dict[str, Any], child: Session, new_child: str,
                      cause: str | None) -> None:
        """A recorded review of ``child`` again: the reviewer from the commit it recorded,
        its verdict parsed from its new answer and compared with the recorded one."""
        from orchestrator.execute import _new_id
        from orchestrator.review import parse_verdict

        req = review.get("requested") or {}
        done = review.get("completed") or {}
        rsid = str(req.get("reviewer_session") or done.get("reviewer_session"))
        reviewer = self.state.sessions.get(rsid)
        new_sid = _new_id()
        about = {"task_id": req.get("task_id"), "attempt": req.get("attempt"),
                 "session_id": new_child}
        requested = await self.append("review.requested", {
            **req, **about, "reviewer_session": new_sid,
            "rerun_of": {"run_id": self.origin, "session_id": rsid}}, cause)
        if reviewer is None or not reviewer.seen:  # never started: serve the verdict
            await self.append("review.completed", {
                **done, **about, "reviewer_session": new_sid, "served": True}, requested)
            self.report["reviews_served"] = self.report.get("reviews_served", 0) + 1
            return
        part = await self.session(reviewer, new_sid, {"causation_id": requested},
                                  via={"kind": "review", "of": child.id,
                                       "task_id": req.get("task_id"),
                                       "attempt": req.get("attempt")})
        self.reviews_rerun += 1
        if self.divergence is not None:
            return
        text = part.get("final_text") or ""
        verdict, reason = (parse_verdict(text) if part["status"] == "completed"
                           else ("error", str(part.get("error"))))
        await self.append("review.completed", {
            **done, **about, "reviewer_session": new_sid, "verdict": verdict,
            "reason": reason, "feedback": text[:len(str(done.get("feedback") or text))]},
            requested)
        if verdict != done.get("verdict"):
            self.divergence = {
                "session": rsid, "agent": reviewer.agent, "turn": len(reviewer.turns),
                "kind": "review", "recorded": done.get("verdict"), "now": verdict,
                "message": f"the review of {child.id} now says {verdict}; the recorded "
                           f"verdict was {done.get('verdict')}"}
