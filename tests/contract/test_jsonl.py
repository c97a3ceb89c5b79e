"""The contract suite on ``file:///dir``: JSONL segments with a sidecar index.

The tamper hooks edit the segment files the way a person with a text editor would
(the store is closed meanwhile); the index is left as it is, so these tests also prove
that a reopened store notices segments that changed behind its back and re-indexes them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eventstore.testing import MultiProcessContract, StoreContract
from eventstore.urls import _local_path


def _segments(url: str) -> list[Path]:
    return sorted((_local_path(url, None) / "segments").glob("*.jsonl"))


def _rewrite(url: str, change: Any) -> None:
    """Apply ``change(list_of_line_dicts)`` to every segment, in place."""
    for seg in _segments(url):
        docs = [json.loads(line) for line in seg.read_text(encoding="utf-8").splitlines()]
        new = change(docs)
        if new is not None:
            text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in new)
            seg.write_text(text, encoding="utf-8")


class TestJsonlStore(StoreContract, MultiProcessContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"file:///{tmp_path}/events"

    async def tamper_edit(self, url: str, position: int) -> None:
        def change(docs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            for d in docs:
                if d["position"] == position:
                    d["data"] = {**d["data"], "x": "edited"}
                    return docs
            return None

        _rewrite(url, change)

    async def tamper_delete(self, url: str, position: int) -> None:
        def change(docs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            kept = [d for d in docs if d["position"] != position]
            return kept if len(kept) != len(docs) else None

        _rewrite(url, change)

    async def tamper_swap(self, url: str, pos_a: int, pos_b: int) -> None:
        fixed = ("position", "version", "batch")

        def change(docs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
            at = {d["position"]: i for i, d in enumerate(docs)}
            if pos_a not in at or pos_b not in at:
                return None
            a, b = docs[at[pos_a]], docs[at[pos_b]]
            new_a = {**b, **{k: a[k] for k in fixed}}
            new_b = {**a, **{k: b[k] for k in fixed}}
            docs[at[pos_a]], docs[at[pos_b]] = new_a, new_b
            return docs

        _rewrite(url, change)
