"""``orchestrail store``: information about the store, and retention."""

from __future__ import annotations

import click

from orchestrator.cli.common import Ctx, emit_json, run_async


@click.group()
def store() -> None:
    """Store administration."""


@store.command("info")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@run_async
async def info_cmd(obj: Ctx, as_json: bool) -> None:
    """Which store is configured, where the config came from, and how big it is."""
    cfg = obj.config()
    async with await obj.open_store(create=False) as st:
        head = await st.head_position()
        streams = await st.streams()
    doc = {
        "url": st.url,
        "config": str(cfg.path) if cfg.path else None,
        "head_position": head,
        "streams": len(streams),
        "events": sum(s.count for s in streams),
        "retention": cfg.store.retention.describe(),
    }
    if as_json:
        emit_json(doc)
    else:
        for k, v in doc.items():
            click.echo(f"{k:>14}: {v}")


@store.command("retention")
@click.option("--max-age", default=None, help="Remove streams whose last event is older (90d).")
@click.option("--max-streams", type=int, default=None, help="Keep only the newest N streams.")
@click.option("--keep", multiple=True, help="Never remove streams with this prefix.")
@click.option("--apply", "apply_", is_flag=True,
              help="Really remove (default is a dry run that only reports).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@run_async
async def retention_cmd(obj: Ctx, max_age: str | None, max_streams: int | None,
                        keep: tuple[str, ...], apply_: bool, as_json: bool) -> None:
    """Apply the retention policy (from orchestrail.yaml unless given here).

    Whole streams only; never a stream of an unfinished run; every removal is recorded in
    the $retention stream so `orchestrail verify` still passes.
    """
    from pydantic import ValidationError

    from eventstore.retention import RetentionPolicy

    policy = obj.config().store.retention
    if max_age is not None or max_streams is not None or keep:
        try:
            policy = RetentionPolicy(
                max_age=max_age or policy.max_age,  # type: ignore[arg-type]
                max_streams=max_streams if max_streams is not None else policy.max_streams,
                keep=tuple(keep) or policy.keep,
            )
        except ValidationError as exc:
            raise click.BadParameter(exc.errors()[0]["msg"]) from None
    async with await obj.open_store(create=False) as st:
        report = await st.apply_retention(policy, dry_run=not apply_)
    if as_json:
        emit_json(report.model_dump(mode="json"))
        return
    verb = "removed" if apply_ else "would remove"
    if policy.infinite:
        click.echo("retention is infinite (no max_age, no max_streams): nothing to remove")
    for r in report.removed:
        click.echo(f"{verb} {r.stream} ({r.count} events, last hash {r.last_hash[:12]})")
    for s in report.protected_unfinished:
        click.echo(f"kept {s}: its run has not finished")
    click.echo(f"{verb} {len(report.removed)} stream(s), {report.events_removed} event(s)"
               + ("" if apply_ else "; run with --apply to remove"))


@store.command("copy")
@click.argument("src_url")
@click.argument("dst_url")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=2_000, show_default=True)
@click.option("--state-dir", type=click.Path(file_okay=False), default=".orchestrail",
              show_default=True, help="Where the resume state of an interrupted copy is kept.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@run_async
async def copy_cmd(obj: Ctx, src_url: str, dst_url: str, batch_size: int, state_dir: str,
                   as_json: bool) -> None:
    """Copy every event from SRC_URL to DST_URL, keeping ids, streams, versions, order and
    hashes; resumable (run it again after an interruption); verified at the end."""
    import asyncio
    import sys
    import time
    from pathlib import Path

    from eventstore.copy import copy_store, state_file_for
    from eventstore.urls import open_store

    cfg = obj.config()
    state = state_file_for(src_url, dst_url, Path(state_dir))
    started = time.monotonic()
    last_print = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_print
        now = time.monotonic()
        if sys.stderr.isatty() and now - last_print > 0.2:
            rate = done / max(now - started, 1e-9)
            click.echo(f"\rcopied up to position {done:,}/{total:,} ({rate:,.0f}/s)  ",
                       err=True, nl=False)
            last_print = now

    async with await open_store(src_url, config=cfg, create=False) as src, \
            await open_store(dst_url, config=cfg, create=True) as dst:
        try:
            report = await copy_store(src, dst, state_path=state, batch_size=batch_size,
                                      progress=progress)
        except (KeyboardInterrupt, asyncio.CancelledError):
            click.echo(f"\norchestrail: copy interrupted; run the same command again to resume "
                       f"(state in {state})", err=True)
            sys.exit(130)
    if sys.stderr.isatty():
        click.echo("", err=True)
    if as_json:
        emit_json(report.model_dump())
    else:
        resumed = f" (resumed after position {report.resumed_from})" if report.resumed_from else ""
        click.echo(f"copied {report.copied:,} events in {report.streams:,} streams{resumed}")
        click.echo("verified: target chains intact and every stream's last hash matches the "
                   "source" if report.verified else
                   f"NOT verified: mismatched streams {report.mismatches}")
    if not report.verified:
        sys.exit(1)


@store.command("migrate")
@click.argument("url", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@run_async
async def migrate_cmd(obj: Ctx, url: str | None, as_json: bool) -> None:
    """Apply pending schema migrations to a PostgreSQL store (default: the configured one).

    Run it with a role that may create tables; the application can then use an
    append-only role (docs/backends.md). Migrations are append-only SQL files.
    """
    from eventstore.errors import ConfigError

    target = url or obj.store_url or obj.config().store_url()
    if not target.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"store migrate applies to PostgreSQL stores; {target.split('://')[0]}"
                          ":// stores create their schema when opened")
    try:
        from eventstore.backends.postgres import migrate
    except ImportError as exc:
        raise ConfigError(f"PostgreSQL support is not installed: pip install "
                          f"'orchestrail[postgres]' ({exc})") from None
    applied = await migrate(target)
    if as_json:
        emit_json({"applied": applied})
    elif applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("schema is up to date")
