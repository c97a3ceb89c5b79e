"""Who answers an "ask": a person at a terminal, nobody (deny), or a policy file.

The engine never blocks on a human; it returns ``ask`` and the agent loop hands the call
to an ``Approver``. Every approver returns a final ``Decision`` (allow or deny, never ask)
whose ``source`` says who decided, so the loop can record ``approval.requested`` and
``approval.resolved`` events with the reason.

Policy file (YAML), evaluated with the same rule syntax and order (deny before allow)::

    allow: ["Bash(uv run ruff check:*)", "Edit(/src/**)"]
    deny: ["Bash(git push:*)"]
    default: deny        # what an unmatched ask becomes (deny unless you say allow)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from agents.errors import PermissionConfigError
from agents.permissions import Decision, PermissionEngine, PermissionRules


@dataclass(frozen=True)
class ApprovalRequest:
    tool: str
    tool_input: Mapping[str, Any]
    decision: Decision  # the engine's "ask"
    agent: str | None = None


class Approver(Protocol):
    async def resolve(self, request: ApprovalRequest) -> Decision: ...


def _final(request: ApprovalRequest, behavior: str, reason: str, source: str,
           rule: str | None = None) -> Decision:
    assert behavior in ("allow", "deny")
    return Decision(behavior, reason, request.decision.tool or request.tool,  # type: ignore[arg-type]
                    rule or request.decision.rule, source, request.decision.subject,
                    request.decision.parts)


class DenyApprover:
    """No one to ask (not a TTY, CI, a background run): deny, saying why."""

    def __init__(self, why: str = "no terminal to ask on") -> None:
        self.why = why

    async def resolve(self, request: ApprovalRequest) -> Decision:
        return _final(request, "deny", f"{request.decision.reason}; {self.why}, so denied",
                      "approver:none")


class TtyApprover:
    """Ask on a terminal: ``y`` allows once, anything else (or EOF) denies."""

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stderr

    def _ask(self, request: ApprovalRequest) -> str:
        who = f"{request.agent} wants to use " if request.agent else ""
        subject = request.decision.subject or ""
        self.stdout.write(f"\n{who}{request.tool}: {subject}\n  ({request.decision.reason})\n"
                          "  allow? [y/N] ")
        self.stdout.flush()
        return self.stdin.readline().strip().lower()

    async def resolve(self, request: ApprovalRequest) -> Decision:
        answer = await asyncio.to_thread(self._ask, request)
        if answer in ("y", "yes"):
            return _final(request, "allow", "approved at the terminal", "approver:tty")
        return _final(request, "deny", "refused at the terminal" if answer else
                      "no answer at the terminal", "approver:tty")


class PolicyApprover:
    """Answer from a YAML policy file (for unattended runs that must not just deny)."""

    def __init__(self, path: Path, workspace: Path) -> None:
        import yaml

        self.path = path
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise PermissionConfigError(f"{path}: cannot read policy: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise PermissionConfigError(f"{path}{line}: invalid YAML policy") from None
        if not isinstance(data, dict) or set(data) - {"allow", "deny", "default"}:
            raise PermissionConfigError(f"{path}: a policy is a mapping with allow, deny and "
                                        "default keys")
        default = data.get("default", "deny")
        if default not in ("allow", "deny"):
            raise PermissionConfigError(f"{path}: default must be allow or deny, not {default!r}")
        self.default = default
        rules = PermissionRules.from_lists(data.get("allow") or (), (), data.get("deny") or (),
                                           source=str(path))
        # dontAsk: an unmatched call comes back as deny, which we then map to the default.
        self.engine = PermissionEngine(workspace, mode="dontAsk", rules=rules)

    async def resolve(self, request: ApprovalRequest) -> Decision:
        d = self.engine.check(request.tool, request.tool_input)
        src = f"approver:policy {self.path}"
        if d.behavior == "allow" and d.rule:
            return _final(request, "allow", f"allowed by policy rule {d.rule}", src, d.rule)
        if d.behavior == "deny" and d.rule:
            return _final(request, "deny", f"denied by policy rule {d.rule}", src, d.rule)
        if d.behavior == "deny" and d.source in ("workspace", "parser"):
            return _final(request, "deny", d.reason, src)
        return _final(request, self.default, f"no policy rule matches; policy default is "
                      f"{self.default}", src)


def make_approver(*, policy: Path | None = None, workspace: Path | None = None,
                  stdin: TextIO | None = None) -> Approver:
    """Policy file if given; else a TTY prompt when stdin is a terminal; else deny."""
    if policy is not None:
        return PolicyApprover(policy, workspace or Path.cwd())
    stream = stdin or sys.stdin
    if stream is not None and stream.isatty():
        return TtyApprover(stream)
    return DenyApprover()
