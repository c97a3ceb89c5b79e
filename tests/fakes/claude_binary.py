"""The real ``claude`` binary for integration tests, installed once if CI has none.

``ORCHESTRAIL_CLAUDE_BIN`` wins (a developer's existing install); otherwise the npm
package is installed into ``<repo>/.cache/claude-code`` (gitignored) on first use and
reused afterwards. A failure is raised, never turned into a skip: a suite that silently
stops testing the claude-code runner would pass for the wrong reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "claude-code"
PACKAGE = "@anthropic-ai/claude-code"
#: The version the mapping was verified against; override with ORCHESTRAIL_CLAUDE_VERSION.
VERSION = os.environ.get("ORCHESTRAIL_CLAUDE_VERSION", "2.1.197")


class ClaudeBinaryUnavailable(RuntimeError):
    pass


def _works(path: str) -> str | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClaudeBinaryUnavailable(f"{path} --version failed: {exc}") from None
    if out.returncode != 0:
        raise ClaudeBinaryUnavailable(f"{path} --version exited {out.returncode}: "
                                      f"{out.stderr.strip()[-500:]}")
    return out.stdout.strip()


def ensure_claude_binary() -> str:
    """Path to a working ``claude``; installs it with npm into .cache/ when needed."""
    explicit = os.environ.get("ORCHESTRAIL_CLAUDE_BIN")
    if explicit:
        _works(explicit)
        return explicit
    local = CACHE / "node_modules" / ".bin" / "claude"
    if not local.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise ClaudeBinaryUnavailable(
                "npm is not installed, so the claude binary cannot be installed; install "
                "Node.js + npm, or set ORCHESTRAIL_CLAUDE_BIN")
        CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit",
                               "--no-fund", f"{PACKAGE}@{VERSION}"],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not local.exists():
            raise ClaudeBinaryUnavailable(
                f"npm install {PACKAGE}@{VERSION} into {CACHE} failed "
                f"(exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    _works(str(local))
    return str(local)


def hooked_project(tmp: Path, orchestrail: str) -> tuple[Path, dict[str, str]]:
    """A fresh workspace ``tmp/ws`` with the hooks ``orchestrail init --claude`` installs,
    and an environment with a fresh ``HOME`` (no user settings, agents or credentials)."""
    ws, home = tmp / "ws", tmp / "home"
    ws.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCHESTRAIL_", "CLAUDE_", "ANTHROPIC_"))}
    env["HOME"] = str(home)
    init = subprocess.run([orchestrail, "init", "--claude"], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=60)
    if init.returncode != 0:
        raise RuntimeError(f"orchestrail init --claude failed: {init.stderr}")
    return ws, env


def run_print(claude: str, ws: Path, env: dict[str, str], api_url: str, prompt: str,
              allowed_tools: str, *, model: str = "claude-haiku-4-5") -> dict[str, Any]:
    """``claude -p PROMPT --output-format json`` against the scripted API; its result."""
    env = {**env, "ANTHROPIC_BASE_URL": api_url, "ANTHROPIC_API_KEY": "sk-test-claude-0000",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    proc = subprocess.run([claude, "-p", prompt, "--output-format", "json",
                           "--allowedTools", allowed_tools, "--model", model],
                          cwd=ws, env=env, capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        raise AssertionError(f"claude -p exited {proc.returncode}: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
