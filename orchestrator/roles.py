"""What the lead (``orchestrator.lead``) and the reviewer (``orchestrator.review``) share:
sessions of a run that work no task of their own, with read-only tools.

Both only look: the lead dispatches, the reviewer judges. Whatever their definition says,
the file-changing tools are taken away (``READ_ONLY_DENY`` is added to
``disallowedTools``), so a lead cannot quietly implement a task itself and a reviewer
cannot "fix" what it reviews. Bash stays as the definition allows it (a reviewer runs the
tests with it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from agents.definition import AgentDefinition
    from agents.loop import AgentSession, Budgets
    from agents.tools.base import Delegate
    from orchestrator.execute import ExecConfig
    from orchestrator.rolescripts import RoleScripts
    from orchestrator.runner import Runner

READ_ONLY_DENY = ("Write", "Edit", "MultiEdit", "NotebookEdit")


def read_only(definition: AgentDefinition) -> AgentDefinition:
    """``definition`` with the file-changing tools disallowed (its hash is the file's)."""
    extra = tuple(t for t in READ_ONLY_DENY if t not in definition.disallowed_tools)
    if not extra:
        return definition
    return definition.model_copy(
        update={"disallowed_tools": (*definition.disallowed_tools, *extra)})


class RoleProviders:
    """Providers for role sessions: scripted (``rolescripts``) or the run's live provider."""

    def __init__(self, runner: Runner) -> None:
        config = runner.config
        self.runner = runner
        self.name = config.provider
        self.scripts: RoleScripts | None = None
        if config.provider == "script" and config.script is not None:
            from orchestrator.rolescripts import RoleScripts
            from orchestrator.scripts import ScriptSet, ScriptSetError

            try:
                self.scripts = RoleScripts(ScriptSet(config.script))
            except ScriptSetError:
                self.scripts = None  # the run's own preflight reports the bad --script

    def check(self, keys: list[str], agent: str, role: str) -> str | None:
        if self.name == "claude-code":
            return (f"--provider claude-code cannot drive the {role}: it needs the native "
                    "agent loop (use script, anthropic or openai)")
        if self.scripts is not None:
            return self.scripts.check(keys, agent, role)
        return None

    def provider(self, keys: list[str], agent: str, role: str, cache_as: str) -> Any:
        if self.scripts is not None:
            return self.scripts.provider(keys, agent, role, cache_as)
        cfg, agents = self.runner.exec, self.runner.agents  # live: the run's own client
        assert cfg is not None and agents is not None
        return cfg.providers(cast(Any, None), agents.get(agent))


def role_session(cfg: ExecConfig, definition: AgentDefinition, prompt: str, *,
                 provider: Any, workspace: Path, session_id: str, causation_id: str,
                 budgets: Budgets, delegate: Delegate | None = None,
                 started_extra: dict[str, Any] | None = None,
                 progress_key: str = "") -> AgentSession:
    """A session of ``definition`` (made read-only) in ``workspace``, recorded in the
    run's trail like any task's session (same store, run id, approver, prices)."""
    from agents.approval import DenyApprover
    from agents.loop import AgentSession
    from agents.permissions import PermissionEngine, load_settings
    from orchestrator.execute import _env, _progress

    definition = read_only(definition)
    settings = load_settings(workspace)
    engine = PermissionEngine.for_agent(definition, workspace, rules=settings.rules,
                                        additional_dirs=settings.additional_directories)
    model = cfg.catalog.resolve(cfg.model or definition.model, cfg.provider_name)

    def progress(kind: str, data: dict[str, Any]) -> None:
        _progress(cfg, progress_key, kind, data)

    return AgentSession(
        definition, prompt, provider=provider, store=cfg.store, workspace=workspace,
        model=model, provider_name=cfg.provider_name, session_id=session_id,
        run_id=cfg.run_id, causation_id=causation_id, budgets=budgets, retry=cfg.retry,
        engine=engine, approver=cfg.approver or DenyApprover(
            "orchestrail run is unattended (give --policy FILE to approve 'ask' rules)"),
        cost_fn=cfg.catalog.cost, record_prompts=cfg.record_prompts,
        env=_env_for(cfg, workspace, session_id, _env), on_progress=progress,
        delegate=delegate, started_extra=started_extra)


def _env_for(cfg: ExecConfig, workspace: Path, session_id: str, env_fn: Any) -> dict[str, str]:
    """``execute._env`` wants a Workspace; a role session has only a directory."""

    class _Dir:
        path = workspace

    return dict(env_fn(cfg, _Dir(), session_id))


def prepare_roles(runner: Runner, problems: list[str]) -> Callable[[], None]:
    """Preflight of ``--lead`` and ``--review`` (their agents and scripts), appending to
    ``problems``; returns what installs them on the runner once its ``exec`` is built."""
    from agents.loop import offered_tools
    from orchestrator.rolescripts import LEAD_KEY, review_keys

    cfg, agents = runner.config, runner.agents
    assert agents is not None
    providers = RoleProviders(runner)
    found: dict[str, AgentDefinition] = {}
    for flag, name in (("--lead", cfg.lead), ("--review", cfg.review)):
        if name is None:
            continue
        if name not in agents:
            hint = (" (this repository ships one: copy its .claude/agents/orchestrator.md "
                    "into the project's .claude/agents/)" if flag == "--lead" else "")
            problems.append(f"{flag} {name}: no agent {name!r} (known: "
                            f"{', '.join(agents.names()) or 'none'}){hint}")
            continue
        d = found[flag] = agents.get(name)
        if flag == "--lead" and cfg.parallel > 1:
            problems.append(f"--lead dispatches one task at a time (the seed's serialized "
                            f"dispatching): drop --parallel {cfg.parallel}")
        if flag == "--lead":
            if "Agent" not in offered_tools(d, delegation=True):
                problems.append(f"--lead {name}: its tools do not include Agent ({d.source});"
                                " a lead dispatches with the Agent tool")
            checks = [([LEAD_KEY], "lead")]
        elif providers.scripts is not None:
            checks = [(review_keys(t.id), f"reviewer of task {t.id}") for t in runner.tasks]
        else:
            checks = [([], "reviewer")]
        for keys, role in checks:
            problem = providers.check(keys, name, role)
            if problem:
                problems.append(problem)
                break

    def install() -> None:
        if "--lead" in found:
            from orchestrator.lead import LeadRun

            runner.lead = LeadRun(runner, found["--lead"], providers)
        if "--review" in found:
            from orchestrator.review import SessionReviewer

            runner.reviewer = SessionReviewer(runner, found["--review"], providers)

    return install
