"""The replay provider extends the request fingerprint incrementally; it must equal the
full recomputation whatever the caller sends (a grown list, a rebuilt one, other roots)."""

from __future__ import annotations

from agents.fingerprint import fingerprint
from agents.providers.base import Message
from agents.providers.replay import ReplayProvider


def msg(role: str, text: str) -> Message:
    return Message(role=role, content=[{"type": "text", "text": text}])


def test_incremental_equals_full() -> None:
    p = ReplayProvider(events=[{"type": "model.responded", "data": {}}])
    convo = [msg("user", "read /ws/app.py")]
    for i in range(6):
        assert p._fingerprint(convo, ["/ws"]) == fingerprint(convo, ["/ws"])
        convo = [*convo, msg("assistant", f"turn {i}"), msg("user", f"result {i}")]
    rebuilt = [msg(m.role, m.content[0]["text"]) for m in convo]  # new objects
    assert p._fingerprint(rebuilt, ["/ws"]) == fingerprint(convo, ["/ws"])
    changed = [*rebuilt[:3], msg("user", "another result"), *rebuilt[4:]]
    assert p._fingerprint(changed, ["/ws"]) == fingerprint(changed, ["/ws"])
    assert p._fingerprint(changed, ["/other"]) == fingerprint(changed, ["/other"])
    assert p._fingerprint(changed[:2], ["/ws"]) == fingerprint(changed[:2], ["/ws"])
