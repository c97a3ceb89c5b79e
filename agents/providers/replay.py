"""The ``replay`` provider: serve a recorded session's model turns again.

It reads the ``model.responded`` events of a session stream and answers each request with
the recorded response whose ``request_fingerprint`` equals the fingerprint of the request
(``agents.fingerprint``): the conversation so far, normalised (tool outputs reduced to
their id and error flag, the workspace path replaced by ``<workspace>``). Matching is by
content, not by position, so a re-run that reaches the same conversation is served the
same answer, and one that does not stops with a ``Divergence`` naming the turn, instead of
being fed answers to questions it never asked.

When several recorded responses share a fingerprint (a retried turn, or a run that went
through the same state twice) they are served in recorded order.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

from agents.fingerprint import chain, fingerprint_hash, fold
from agents.providers.base import ModelRequest, ModelResponse, ProviderError, Usage

if TYPE_CHECKING:
    from eventstore.base import EventStore


class Divergence(ProviderError):
    """The request has no recorded counterpart: the re-run left the recorded path."""

    def __init__(self, message: str, *, turn: int, fingerprint: str) -> None:
        super().__init__(message)
        self.turn = turn
        self.fingerprint = fingerprint


class ReplayProvider:
    name = "replay"

    def __init__(self, store: EventStore | None = None, session: str | None = None, *,
                 events: list[Any] | None = None, workspace: str | None = None,
                 **_: Any) -> None:
        """``session``: a session id or a ``session-<id>`` stream name. ``events``: recorded
        events (``RecordedEvent`` or dicts with ``type`` and ``data``) instead of a store.
        ``workspace``: the directory the re-run works in (normalised like the recording's)."""
        if store is None and events is None:
            raise ProviderError("the replay provider needs a store and a session (or events)")
        if events is None and not session:
            raise ProviderError("the replay provider needs the session to replay")
        self.store = store
        self.stream = None if session is None else (
            session if session.startswith("session-") else f"session-{session}")
        self.workspace = workspace
        self._events = events
        self._by_fp: dict[str, deque[dict[str, Any]]] | None = None
        self.recorded_turns = 0
        self.recorded_workspace: str | None = None
        #: (message, chain head after it) of the last request: the loop sends the same
        #: Message objects again plus the new ones, so each turn hashes only what is new
        #: (recomputing the whole conversation made a long session quadratic)
        self._heads: list[tuple[Any, str]] = []
        self._roots: list[str] = []

    async def _load(self) -> dict[str, deque[dict[str, Any]]]:
        if self._by_fp is not None:
            return self._by_fp
        events: list[Any] = []
        if self._events is not None:
            events = list(self._events)
        else:
            assert self.store is not None and self.stream is not None
            async for ev in self.store.read_stream(self.stream):
                events.append(ev)
        by_fp: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        for ev in events:
            type_ = ev["type"] if isinstance(ev, dict) else ev.type
            data = ev["data"] if isinstance(ev, dict) else ev.data
            if type_ == "agent.started" and isinstance(data.get("workspace"), str):
                self.recorded_workspace = data["workspace"]
            if type_ != "model.responded":
                continue
            fp = data.get("request_fingerprint")
            if isinstance(fp, str):
                by_fp[fp].append(data)
                self.recorded_turns += 1
        if not self.recorded_turns:
            where = self.stream or "the given events"
            raise ProviderError(f"replay: {where} holds no model.responded events with a "
                                "request fingerprint; nothing to replay")
        self._by_fp = by_fp
        return by_fp

    async def complete(self, request: ModelRequest) -> ModelResponse:
        by_fp = await self._load()
        roots = [w for w in (self.workspace, self.recorded_workspace) if w]
        fp = self._fingerprint(request.messages, roots)
        turn = 1 + sum(1 for m in request.messages if m.role == "assistant")
        queue = by_fp.get(fp)
        if not queue:
            where = self.stream or "the recording"
            raise Divergence(
                f"replay divergence at turn {turn}: no recorded model.responded in {where} "
                f"matches this request (fingerprint {fp[:16]}); the re-run asked something "
                f"the recorded run never did ({self.recorded_turns} recorded turns)",
                turn=turn, fingerprint=fp)
        data = queue.popleft()
        usage = data.get("usage") or {}
        return ModelResponse(content=list(data.get("content") or []),
                             stop_reason=str(data.get("stop_reason") or "end_turn"),
                             usage=Usage(**{k: v for k, v in usage.items()
                                            if k in Usage.model_fields}),
                             model=str(data.get("model") or request.model),
                             response_id=data.get("response_id"))

    def _fingerprint(self, messages: list[Any], roots: list[str]) -> str:
        """``agents.fingerprint.fingerprint(messages, roots)``, extended incrementally."""
        if roots != self._roots:  # normalised differently: start over
            self._heads, self._roots = [], list(roots)
        heads = self._heads
        k = 0
        while k < len(heads) and k < len(messages) and heads[k][0] is messages[k]:
            k += 1
        del heads[k:]
        head = heads[-1][1] if heads else fold(())
        for message in messages[k:]:
            head = chain(head, fingerprint_hash(message, roots))
            heads.append((message, head))
        return head

    async def aclose(self) -> None:
        return None
