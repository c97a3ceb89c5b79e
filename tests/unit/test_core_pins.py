"""Pins for two core bugs the contract suite found.

1. The name rules used ``re.match`` with ``$``, which also matches before a trailing
   newline, so ``"run-1\\n"`` passed as a stream name (and likewise types and actors).
2. ``check_batch`` trusted ``NewEvent``'s validators, but ``NewEvent.model_construct``
   skips them; the store must still refuse an invalid type or actor, writing nothing.
"""

from __future__ import annotations

import pytest

from eventstore.append import check_batch
from eventstore.canonical import actor_problem, stream_name_problem, type_problem
from eventstore.errors import InvalidEvent
from eventstore.model import NewEvent


@pytest.mark.parametrize("check,value", [
    (stream_name_problem, "run-1\n"),
    (type_problem, "tool.completed\n"),
    (actor_problem, "agent:coder\n"),
])
def test_trailing_newline_is_not_a_valid_name(check: object, value: str) -> None:
    assert callable(check)
    assert check(value) is not None
    assert check(value.rstrip("\n")) is None


def _unvalidated(**kw: object) -> NewEvent:
    fields: dict[str, object] = dict(
        type="tool.completed", data={}, actor="orchestrator", correlation_id=None,
        causation_id=None, id="e-1", occurred_at=None, metadata={},
    )
    fields.update(kw)
    return NewEvent.model_construct(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"type": "not a type"}, {"actor": "two words"}])
def test_check_batch_refuses_events_that_skipped_validation(bad: dict[str, str]) -> None:
    with pytest.raises(InvalidEvent, match=r"events\[1\]"):
        check_batch([NewEvent(type="ok.event"), _unvalidated(**bad)])


def test_check_batch_accepts_valid_unvalidated_events() -> None:
    check_batch([_unvalidated()])
