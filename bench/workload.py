"""The events every contender writes: deterministic, about 1 KB of canonical JSON each.

Each contender gets the same logical events in its own native form (our ``NewEvent``,
the eventsourcing library's domain events, precomputed rows for the raw floors), built
before the clock starts, so the timings cover what a user pays per append: validation of
the batch, redaction, encoding, hashing and the database write.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from eventstore.append import Row, build_rows
from eventstore.model import NewEvent

WORDS = (
    "agent", "tool", "bash", "pytest", "read", "write", "edit", "file", "commit", "diff",
    "review", "plan", "step", "model", "prompt", "result", "error", "retry", "cache", "build",
    "module", "import", "class", "function", "return", "value", "config", "store", "event",
    "stream", "query", "index", "page", "cursor", "hash", "chain", "verify", "replay",
)
TYPES = (
    ("tool.completed", 30), ("tool.requested", 30), ("model.called", 10),
    ("model.responded", 10), ("agent.message", 8), ("tool.denied", 2), ("run.step", 6),
    ("file.changed", 3), ("run.note", 1),
)
ACTORS = (
    ("agent:coder", 40), ("agent:reviewer", 20), ("orchestrator", 20), ("claude-code", 15),
    ("user:ann", 5),
)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _pick(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([t for t, _ in table], weights=[w for _, w in table])[0]


def payload(rng: random.Random, i: int, size: int = 1000) -> dict[str, Any]:
    words = []
    total = 0
    while total < size - 200:
        w = rng.choice(WORDS)
        words.append(w)
        total += len(w) + 1
    return {
        "call_id": f"call-{i}",
        "tool": "Bash",
        "input": {"command": "pytest -q tests/unit", "cwd": "/work/repo"},
        "output": " ".join(words),
        "exit_code": 0,
        "duration_ms": rng.randint(1, 5000),
    }


def new_event(rng: random.Random, i: int, correlation: str, size: int = 1000) -> NewEvent:
    return NewEvent(
        type=_pick(rng, TYPES),
        actor=_pick(rng, ACTORS),
        correlation_id=correlation,
        occurred_at=T0 + timedelta(milliseconds=i * 37),
        data=payload(rng, i, size),
    )


def batches(seed: int, count: int, size: int, payload_bytes: int = 1000
            ) -> list[list[NewEvent]]:
    rng = random.Random(seed)
    out = []
    n = 0
    for b in range(count):
        batch = []
        for _ in range(size):
            batch.append(new_event(rng, n, f"run-{seed}-{b}", payload_bytes))
            n += 1
        out.append(batch)
    return out


def rows_for(stream: str, events: list[NewEvent]) -> list[Row]:
    """The rows our append would write for ``events`` on a new stream (for the floors)."""
    return build_rows(stream, events, None, datetime.now(UTC))
