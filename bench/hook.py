"""``python -m bench.hook [--runs N]``: cold-process latency of ``orchestrail hook``.

The bar (issue 7): p50 of a cold ``orchestrail hook`` process, default store (SQLite,
``synchronous=FULL``, so every event is fsynced before the process exits), under 4x a
bare ``python -c pass`` measured in the same run. Three contenders take turns in every
round (fair when the shared machine's load swings): the bare interpreter, ``python -c
"import pydantic"`` (what the hook would cost with the full store API), and the hook fed
a realistic PreToolUse payload. Also shown: the hook with an ``orchestrail.yaml`` present
(PyYAML is then imported) for information. After the run the events are counted through
the store API and the chains verified: a fast hook that lost events would fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BAR = 4.0
HOOK = str(Path(sys.executable).parent / "orchestrail")


def payload(i: int, cwd: Path) -> bytes:
    return json.dumps({
        "session_id": "bench-5f0e7a52-1c1e-4c55-9a0b-8d7f8f3c2a11",
        "transcript_path": str(cwd / "t.jsonl"), "cwd": str(cwd),
        "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Bash",
        "tool_input": {"command": f"pytest tests/unit -q -k case_{i}",
                       "description": "run the unit tests"},
        "tool_use_id": f"toolu_bench_{i:06d}"}).encode()


def timed(argv: list[str], cwd: Path, env: dict[str, str], stdin: bytes = b"") -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, cwd=cwd, env=env, capture_output=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0 or proc.stdout:
        raise SystemExit(f"{argv} failed: rc={proc.returncode} out={proc.stdout!r} "
                         f"err={proc.stderr[-500:]!r}")
    return elapsed * 1000


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


async def count_and_verify(url: str) -> int:
    from eventstore.model import Query
    from eventstore.urls import open_store

    store = await open_store(url, create=False)
    try:
        report = await store.verify()
        if not report.ok:
            raise SystemExit(f"chain verification failed: {report}")
        return len([e async for e in store.read(Query())])
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCHESTRAIL_", "CLAUDE_"))}
    with tempfile.TemporaryDirectory(prefix="bench-hook-") as tmp:
        plain, with_cfg = Path(tmp) / "plain", Path(tmp) / "cfg"
        plain.mkdir()
        with_cfg.mkdir()
        (with_cfg / "orchestrail.yaml").write_text(
            "store:\n  url: sqlite:///.orchestrail/events.db\nredact:\n  enabled: true\n")
        # first call creates the store (schema, WAL): not what a session's hooks pay
        timed([HOOK, "hook"], plain, env, payload(-1, plain))
        timed([HOOK, "hook"], with_cfg, env, payload(-1, with_cfg))
        bare: list[float] = []
        pyd: list[float] = []
        hook: list[float] = []
        hook_cfg: list[float] = []
        for i in range(args.runs):
            bare.append(timed([sys.executable, "-c", "pass"], plain, env))
            pyd.append(timed([sys.executable, "-c", "import pydantic"], plain, env))
            hook.append(timed([HOOK, "hook"], plain, env, payload(i, plain)))
            hook_cfg.append(timed([HOOK, "hook"], with_cfg, env, payload(i, with_cfg)))
        stored = asyncio.run(count_and_verify(f"sqlite:///{plain}/.orchestrail/events.db"))
        stored_cfg = asyncio.run(
            count_and_verify(f"sqlite:///{with_cfg}/.orchestrail/events.db"))
    b50 = statistics.median(bare)
    print(f"orchestrail hook, cold process, {args.runs} runs, default SQLite store "
          f"(synchronous=FULL), python {sys.version.split()[0]}")
    print(f"{'':34}{'p50 ms':>9}{'p95 ms':>9}{'x bare':>9}")
    for name, xs in (("python -c pass", bare), ('python -c "import pydantic"', pyd),
                     ("orchestrail hook", hook),
                     ("orchestrail hook + orchestrail.yaml", hook_cfg)):
        print(f"{name:34}{statistics.median(xs):9.1f}{pct(xs, 0.95):9.1f}"
              f"{statistics.median(xs) / b50:9.2f}")
    expected = args.runs + 1
    print(f"events stored and verified: {stored}/{expected} (no config), "
          f"{stored_cfg}/{expected} (with config)")
    ratio = statistics.median(hook) / b50
    ok = ratio < BAR and stored == expected and stored_cfg == expected
    print(f"bar: hook p50 < {BAR:g}x bare python, every event durable: "
          f"{ratio:.2f}x -> {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
