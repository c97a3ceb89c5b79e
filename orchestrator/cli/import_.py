"""``orchestrail import``: bring records made elsewhere into the trail.

``import claude-code PATH...``: Claude Code session transcripts, mapped onto the same
streams and vocabulary as the live hook (``orchestrator.importers.claude_code``), so
``runs``, ``replay`` and ``audit`` read them unchanged.
"""

from __future__ import annotations

import sys

import click

from orchestrator.cli.common import Ctx, emit_json, fail, run_async

#: Exit status when the import finished but skipped bad lines (documented in docs/cli.md).
EXIT_SKIPPED = 1


@click.group(name="import")
def import_() -> None:
    """Import records made outside orchestrail (Claude Code transcripts)."""


@import_.command("claude-code")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="A JSON summary on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no per-line reports.")
@click.pass_obj
@run_async
async def claude_code(obj: Ctx, paths: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Import Claude Code transcripts: files, session or project directories, or the whole
    ~/.claude/projects tree. Idempotent: importing again appends only what is new.

    Each bad line (not JSON, torn last line, binary file, not a transcript record) is
    reported as FILE:LINE: REASON on stderr and skipped; the rest is imported, and the
    exit status is 1 when anything was skipped.
    """
    from pathlib import Path

    from orchestrator.importers.claude_code import (
        BadLine,
        ImportInputError,
        Progress,
        discover,
        import_sessions,
    )

    found_bad: list[BadLine] = []
    try:
        sessions, ignored = discover((Path(p).expanduser() for p in paths), found_bad)
    except ImportInputError as exc:
        fail(str(exc))
        return
    files = [f for s in sessions for f in s.files()]
    total = 0
    for f in files:
        try:
            total += f.stat().st_size
        except OSError:
            pass
    bar = Progress(len(files), total) if sys.stderr.isatty() and not quiet else None
    store = await obj.open_store()
    try:
        summary = await import_sessions(store, sessions, progress=bar, bad_lines=found_bad)
    finally:
        if bar is not None:
            bar.done()
        await store.close()
    summary.ignored_files = ignored
    if not quiet:
        for bad in summary.bad_lines:
            click.echo(str(bad), err=True)
        for rec in summary.recorded_by_runs:
            click.echo(f"session {rec['session']}: not imported, already recorded by run "
                       f"{', '.join(rec['runs'])}", err=True)
    if as_json:
        emit_json(summary.to_dict())
    else:
        click.echo(
            f"imported {summary.sessions:,} session(s) from {summary.files:,} file(s) "
            f"({summary.bytes / 1e6:.1f} MB, {summary.records:,} records): "
            f"{summary.appended:,} event(s) appended, {summary.duplicates:,} already stored")
        if summary.bad_lines:
            click.echo(f"skipped {len(summary.bad_lines):,} bad line(s) (listed on stderr)")
    if summary.bad_lines:
        sys.exit(EXIT_SKIPPED)
