"""The audit HTML page of a 10,000-event run on SQLite (issue 6 bar: under 3 s, and the
page stays usable: collapsed detail, no 50 MB DOM).

The run is generated once with ``bench.replay``'s realistic shapes (agent loop fields,
capped outputs with sha256, files, denials, model retries) into
``bench/.data/replay-<events>.db``. What is timed is what ``orchestrail audit RUN --format
html`` does after opening the store: read and fold the run, check the chains of its
streams, build the report and render the page. The peer, timed in the same process on the
same run, is ``replay RUN --format html`` (read + fold + the replay tree page).

    python -m bench.audit [--events 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from pathlib import Path

from bench.replay import RUN_ID, generated

BAR_S = 3.0


async def once(path: Path) -> tuple[float, float, float, int, str]:
    """(audit seconds, of which verify, replay-html seconds, events, page)."""
    from eventstore.backends.sqlite import SQLiteStore
    from eventstore.verify import verify_streams
    from orchestrator.audit import load_audit, run_streams
    from orchestrator.cli.replay import gc_paused, replay_document
    from orchestrator.render.audit_html import render_audit_html
    from orchestrator.render.html import render_html

    store = await SQLiteStore.open(path, create=False)
    try:
        t = time.perf_counter()
        doc = await load_audit(store, [RUN_ID])
        with gc_paused():
            page = render_audit_html(doc)
        audit_s = time.perf_counter() - t
        t = time.perf_counter()
        state, replay_doc = await replay_document(store, RUN_ID)
        with gc_paused():
            render_html(replay_doc)
        replay_s = time.perf_counter() - t
        t = time.perf_counter()
        await verify_streams(store, await run_streams(store, state))
        verify_s = time.perf_counter() - t
        return audit_s, verify_s, replay_s, state.events, page
    finally:
        await store.close()


def dom_elements(page: str) -> int:
    """Elements the browser builds when the page opens (the JSON row blobs are text)."""
    visible = re.sub(r"<script type=application/json[^>]*>.*?</script>", "", page, flags=re.S)
    return len(re.findall(r"<[a-zA-Z]", visible))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    path = generated(args.events)
    audits, verifies, replays = [], [], []
    for _ in range(args.rounds):
        a, v, r, n, page = asyncio.run(once(path))
        audits.append(a)
        verifies.append(v)
        replays.append(r)
    med, peer = statistics.median(audits), statistics.median(replays)
    size = len(page.encode())
    print(f"audit HTML: {n:,} events; median {med:.3f}s (best {min(audits):.3f}s) over "
          f"{args.rounds} rounds; bar {BAR_S:.0f}s; ratio {med / BAR_S:.2f} of the bar")
    print(f"  page {size / 1e6:.2f} MB, {dom_elements(page):,} elements in the DOM on open "
          f"(table rows past the first 100 kept as text until asked for)")
    print(f"  peer: replay --format html of the same run, median {peer:.3f}s; audit/replay "
          f"{med / peer:.2f}x; chain check of the run's streams alone "
          f"{statistics.median(verifies):.3f}s")


if __name__ == "__main__":
    main()
