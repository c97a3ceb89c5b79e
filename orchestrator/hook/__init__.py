"""``orchestrail hook``: the command Claude Code's hooks run, on every hook event.

Standard library only, and dispatched by the console script before click is imported
(``orchestrator.entry``): Claude Code waits for PreToolUse hooks on every tool call, so
the cold start is the cost. Contract with Claude Code: read one JSON object on stdin,
print nothing on stdout (stdout that starts with ``{`` would be read as a decision),
exit 0 whatever happens. A store that cannot take the events (locked past a short
timeout, unreachable, broken config) gets the input spooled instead; the next hook
invocation or ``orchestrail hook --flush`` delivers the spool in order, exactly once.

Environment: ``ORCHESTRAIL_STORE`` (store URL), ``ORCHESTRAIL_CONFIG``,
``ORCHESTRAIL_HOOK_BUSY_MS`` (lock wait before spooling, default 2000).
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

USAGE = """\
usage: orchestrail hook [--flush]

  Reads one Claude Code hook JSON object on stdin and records it in the event store.
  Always exits 0 with nothing on stdout. --flush delivers spooled hook input instead.
"""


def _busy_ms() -> int:
    raw = os.environ.get("ORCHESTRAIL_HOOK_BUSY_MS", "")
    return int(raw) if raw.isdigit() else 2_000


def _read_stdin() -> bytes:
    try:
        return sys.stdin.buffer.read()
    except Exception:
        return b""


def record(raw: bytes) -> None:
    """Record one invocation, spooling it when the store cannot take it now."""
    from eventstore.canonical import format_ts, uuid7
    from orchestrator.hook import spool
    from orchestrator.hook.sink import Item, deliver, warn
    from orchestrator.hook.target import resolve

    item = Item(raw=raw, key=str(uuid7()), received_at=format_ts(datetime.now(UTC)))
    try:
        target = resolve()
    except Exception as exc:
        warn(f"cannot read the orchestrail config ({exc}); spooling")
        project = os.environ.get("CLAUDE_PROJECT_DIR")
        spool.append(Path(project or ".") / ".orchestrail", raw, item.key, item.received_at)
        return
    if spool.pending(target.spool_dir):
        # earlier input waits in the spool: queue behind it, then try to deliver it all
        spool.append(target.spool_dir, raw, item.key, item.received_at)
        flush(quiet=True)
        return
    try:
        deliver(target, [item], busy_ms=_busy_ms())
    except Exception as exc:
        from eventstore.redact import mask_url

        warn(f"store {mask_url(target.url)} did not take the event ({exc}); spooled to "
             f"{target.spool_dir}")
        spool.append(target.spool_dir, raw, item.key, item.received_at)


def flush(*, quiet: bool = False) -> tuple[int, int]:
    """Deliver the spool, oldest first; return (lines delivered, events written).

    Stops at the first failure, leaving the rest for the next try."""
    from orchestrator.hook import spool
    from orchestrator.hook.sink import Item, deliver, warn
    from orchestrator.hook.target import resolve

    target = resolve()
    lines = written = 0
    with spool.flushing(target.spool_dir) as mine:
        if not mine:
            return 0, 0  # another process is flushing; it loops until the spool is empty
        for _ in range(10):
            taken = spool.take(target.spool_dir)
            if not taken:
                break
            for path in taken:
                items = [Item(raw=r, key=k, received_at=t) for r, k, t in spool.read(path)]
                try:
                    written += deliver(target, items, busy_ms=_busy_ms())
                except Exception as exc:
                    if not quiet:
                        raise
                    warn(f"spool not delivered yet ({exc}); kept in {path}")
                    return lines, written
                path.unlink()
                lines += len(items)
    return lines, written


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 for every hook invocation)."""
    args = sys.argv[2:] if argv is None else argv
    if "-h" in args or "--help" in args:
        sys.stdout.write(USAGE)
        return 0
    if "--flush" in args:
        try:
            lines, written = flush()
        except Exception as exc:
            sys.stderr.write(f"orchestrail hook --flush: spool not delivered: {exc}\n")
            return 1
        sys.stdout.write(f"delivered {lines} spooled hook call(s), {written} new event(s)\n")
        return 0
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # nothing we do may print where Claude Code reads decisions
    try:
        record(_read_stdin())
    except BaseException as exc:  # the last line of defence: never break Claude Code
        try:
            sys.stderr.write(f"orchestrail hook: {type(exc).__name__}: {exc}\n")
        except Exception:
            pass
    finally:
        sys.stdout = real_stdout
    return 0
