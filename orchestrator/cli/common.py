"""What every sub-command shares: the store it opens, how it fails, how it prints."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from eventstore.base import EventStore
    from eventstore.config import Config
    from orchestrator.runs import RunSummary

T = TypeVar("T")


@dataclass
class Ctx:
    store_url: str | None = None
    config_path: str | None = None
    _config: Config | None = None

    def config(self) -> Config:
        if self._config is None:
            from eventstore.config import load_config, parse_config_file

            if self.config_path:
                path = Path(self.config_path)
                if not path.is_file():
                    from eventstore.errors import ConfigError

                    raise ConfigError(f"--config {self.config_path}: no such file")
                self._config = parse_config_file(path)
            else:
                self._config = load_config()
        return self._config

    async def open_store(self, *, create: bool = True) -> EventStore:
        from eventstore.urls import open_store

        return await open_store(self.store_url, config=self.config(), create=create)


def configure_logging(verbose: int) -> None:
    """structlog to stderr; program output stays alone on stdout."""
    import structlog

    level = logging.WARNING - 10 * min(verbose, 2)
    if os.environ.get("ORCHESTRAIL_LOG_LEVEL"):
        level = logging.getLevelName(os.environ["ORCHESTRAIL_LOG_LEVEL"].upper())
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        cache_logger_on_first_use=True,
    )


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, a non-zero exit."""
    click.echo(f"orchestrail: error: {message}", err=True)
    sys.exit(code)


async def resolve_run_or_fail(store: EventStore, text: str | None, *, last: bool = False,
                              runs: list[RunSummary] | None = None) -> str:
    """``runs.resolve_run``, or exit 2 naming the closest ids: for the commands where an
    unknown run is bad input (rerun, resume, diff); replay and audit let ``run_async``
    report it with exit 1."""
    from orchestrator.runs import RunNotFound, resolve_run

    try:
        return await resolve_run(store, text, last=last, runs=runs)
    except RunNotFound as exc:
        fail(str(exc), 2)
        raise  # not reached: fail exits


def run_async(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T | None]:
    """Run an async command body; turn our errors into one-line messages and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        from eventstore.errors import StoreError

        try:
            return asyncio.run(fn(*args, **kwargs))
        except StoreError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(0)
        return None

    return wrapper


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


def write_output(data: bytes, output: str | None) -> None:
    """Program output as bytes: to ``output`` whole or not at all (a temporary file in the
    same directory, renamed over it), or to stdout. Bytes, so a 50 MB JSON document is
    not decoded to ``str`` only to be encoded again."""
    if output is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    import tempfile

    folder = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".orchestrail-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
    click.echo(f"wrote {output} ({len(data):,} bytes)", err=True)
