"""Bash: one command line in the workspace, in its own process group, with a hard timeout.

* ``bash -c COMMAND`` with cwd = the workspace, stdin from /dev/null, stdout and stderr
  merged (the order the model would see in a terminal).
* ``start_new_session=True``: the command and everything it forks share a fresh process
  group, so a timeout (default 120 s, at most 600 s) ``SIGKILL``s the whole group, and when
  the command itself exits, leftovers it put in the background (``sleep 1000 &``) are
  killed too. A process that leaves the group on purpose (``setsid``, double fork plus
  ``setsid``) escapes this; the permission rules are the line of defence there (agents
  should be given ``Bash(<prefix>:*)`` rules, never bare ``Bash``). After the command
  exits we read what is left in the pipe for at most ``DRAIN_SECONDS``: an escaped process
  holding the pipe open cannot hang the session.
* Output is read in chunks as it comes and only the first ``output_cap`` characters are
  kept (the rest is counted and dropped), so ``yes`` cannot exhaust memory.
* Environment: a minimal one, never the orchestrator's (which holds provider API keys):
  ``PATH``, ``HOME``, ``LANG``, ``LC_ALL``, ``TERM=dumb``, ``TMPDIR`` and ``PWD``, plus
  ``ORCHESTRAIL_SESSION_ID``. Callers extend it through ``ToolContext.env``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any, ClassVar

from agents.tools.base import Tool, ToolContext, ToolError, ToolResult

DRAIN_SECONDS = 0.5
_CHUNK = 65536
#: variables copied from our own environment into a Bash tool's (nothing secret)
PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "TMPDIR")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def minimal_env(workspace: str, session_id: str = "",
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a Bash tool runs with: no API keys, no tokens, nothing inherited."""
    env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env.update({"HOME": workspace, "PWD": workspace, "TERM": "dumb",
                "ORCHESTRAIL_SESSION_ID": session_id})
    if extra:
        env.update(extra)
    return env


def _exit_future(proc: asyncio.subprocess.Process) -> asyncio.Future[None]:
    """Resolves when the process exits, even while something still holds its stdout.

    ``Process.wait()`` waits for the pipes to close as well, so a background child that
    keeps stdout open (``sleep 1000 &``) would make it block until the timeout. A pidfd
    becomes readable at exit without reaping (asyncio's child watcher still reaps); where
    pidfds do not exist we fall back to ``wait()``.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        waiter = asyncio.ensure_future(proc.wait())

        def done(_: object) -> None:
            if not fut.done():
                fut.set_result(None)

        waiter.add_done_callback(done)
        fut.add_done_callback(lambda _: waiter.cancel())
        return fut

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    def cleanup(_: object) -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)

    loop.add_reader(pidfd, ready)
    fut.add_done_callback(cleanup)
    return fut


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Bash(Tool):
    name: ClassVar[str] = "Bash"
    description: ClassVar[str] = (
        "Run a shell command in the workspace. timeout in milliseconds (default 120000, "
        "max 600000). Output (stdout and stderr) is truncated after 30000 characters.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "minLength": 1, "description": "The command"},
            "timeout": {"type": "number", "minimum": 1, "maximum": 600000,
                        "description": "Timeout in milliseconds (max 600000)"},
            "description": {"type": "string", "description": "What the command does"},
            "run_in_background": {"type": "boolean",
                                  "description": "Not supported by this runtime"},
        },
        "required": ["command"],
        "additionalProperties": False,
    }

    async def run(self, data: dict[str, Any], ctx: ToolContext) -> ToolResult:
        if data.get("run_in_background"):
            raise ToolError("run_in_background is not supported by the native runtime")
        command: str = data["command"]
        if "\x00" in command:
            raise ToolError("the command contains a NUL byte")
        timeout = ctx.bash_default_timeout
        if "timeout" in data:
            timeout = float(data["timeout"]) / 1000.0
        timeout = min(timeout, ctx.bash_max_timeout)
        left = ctx.deadline_left()
        if left is not None:
            timeout = max(0.0, min(timeout, left))
        env = ctx.env if ctx.env is not None else minimal_env(
            str(ctx.workspace), ctx.session_id)
        proc = await asyncio.create_subprocess_exec(
            "/bin/bash", "-c", command, cwd=str(ctx.workspace), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        pgid = proc.pid  # leader of its new session and process group
        assert proc.stdout is not None
        kept = bytearray()
        total = 0
        cap_bytes = ctx.output_cap * 4  # utf-8 worst case; cut by characters below

        async def pump() -> None:
            nonlocal total
            assert proc.stdout is not None
            while True:
                chunk = await proc.stdout.read(_CHUNK)
                if not chunk:
                    return
                total += len(chunk)
                if len(kept) < cap_bytes:
                    kept.extend(chunk[:cap_bytes - len(kept)])

        reader = asyncio.create_task(pump())
        exited = _exit_future(proc)
        timed_out = False
        try:
            try:
                await asyncio.wait_for(asyncio.shield(exited), timeout)
            except TimeoutError:
                timed_out = True
            _kill_group(pgid)  # the timed-out command, or background leftovers of a done one
            # reap (asyncio's wait() also waits for the pipe; an escaped process may hold it)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), DRAIN_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), DRAIN_SECONDS)
        except BaseException:
            _kill_group(pgid)  # cancelled (wall-time budget, Ctrl-C): leave nothing behind
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(proc.wait(), 2.0)  # reap it; close the transport
            raise
        finally:
            exited.cancel()
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
        text = kept.decode("utf-8", errors="replace")
        truncated = total > len(kept) or len(text) > ctx.output_cap
        if len(text) > ctx.output_cap:
            text = text[:ctx.output_cap]
        if truncated:
            text += (f"\n[output truncated: {total} bytes in all, only the first "
                     f"{ctx.output_cap} characters are shown]")
        code = proc.returncode if proc.returncode is not None else (-9 if timed_out else None)
        if timed_out:
            text += (f"\n[command timed out after {timeout:g} s; its process group was "
                     "killed]")
            return ToolResult(text, is_error=True, exit_code=code, truncated=truncated,
                              timed_out=True)
        if code is not None and code < 0:
            text += f"\n[killed by signal {-code}]"
        elif code:
            text += f"\n[exit code {code}]"
        return ToolResult(text if text else "(no output)", is_error=code != 0,
                          exit_code=code, truncated=truncated)
