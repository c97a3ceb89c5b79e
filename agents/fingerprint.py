"""Digests of a conversation: one for audit (everything) and one for replay (structure).

Both are hash chains over the messages, ``h_n = sha256(h_{n-1} + sha256(message_n))``, so
the agent loop extends them in O(1) per message instead of re-hashing the whole
conversation every turn, and the replay provider recomputes the same value from a full
request.

* ``message_digest``: every byte of every block (tool outputs included). Two model calls
  with the same digest were shown exactly the same conversation.
* ``fingerprint``: what replay matches on. It keeps the prompt, the assistant's text and
  tool calls (name + input) and, of each tool result, only its ``tool_use_id`` and
  ``is_error``: when a run is re-executed, real tools produce outputs that differ in
  timings, temp paths or PIDs, and that must not count as a divergence; a different tool
  call, or a call that now fails, must. The workspace path is replaced by ``<workspace>``
  so a re-run in a scratch directory matches the original. Thinking blocks are ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from agents.providers.base import Message

_ZERO = "0" * 64


def _canon(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


Workspaces = str | Sequence[str] | None


def _normalise_block(block: dict[str, Any], workspace: Workspaces) -> dict[str, Any] | None:
    kind = block.get("type")
    roots = [workspace] if isinstance(workspace, str) else list(workspace or ())
    roots.sort(key=len, reverse=True)

    def scrub(text: str) -> str:
        for root in roots:
            if root:
                text = text.replace(root, "<workspace>")
        return text

    if kind == "text":
        return {"type": "text", "text": scrub(str(block.get("text", ""))).strip()}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.get("id"), "name": block.get("name"),
                "input": scrub(_canon(block.get("input")).decode())}
    if kind == "tool_result":
        return {"type": "tool_result", "tool_use_id": block.get("tool_use_id"),
                "is_error": bool(block.get("is_error", False))}
    if kind in ("thinking", "redacted_thinking"):
        return None
    return {"type": kind}


def message_hash(message: Message) -> str:
    return hashlib.sha256(_canon([message.role, message.content])).hexdigest()


def fingerprint_hash(message: Message, workspace: Workspaces = None) -> str:
    blocks = [b for b in (_normalise_block(x, workspace) for x in message.content) if b]
    return hashlib.sha256(_canon([message.role, blocks])).hexdigest()


def chain(prev: str, item: str) -> str:
    return hashlib.sha256((prev + item).encode()).hexdigest()


def fold(hashes: Iterable[str]) -> str:
    head = _ZERO
    for h in hashes:
        head = chain(head, h)
    return head


def message_digest(messages: Sequence[Message]) -> str:
    return fold(message_hash(m) for m in messages)


def fingerprint(messages: Sequence[Message], workspace: Workspaces = None) -> str:
    return fold(fingerprint_hash(m, workspace) for m in messages)


class Chain:
    """Both chains, extended one message at a time (what the loop uses)."""

    def __init__(self, workspace: str | None = None) -> None:
        self.workspace = workspace
        self.digest = _ZERO
        self.fingerprint = _ZERO

    def add(self, message: Message) -> None:
        self.digest = chain(self.digest, message_hash(message))
        self.fingerprint = chain(self.fingerprint, fingerprint_hash(message, self.workspace))
