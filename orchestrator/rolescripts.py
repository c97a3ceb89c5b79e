"""Scripted turns for the sessions of a run that work no task of their own: the lead
(``run --lead``) and the reviewer (``run --review``), under ``--provider script``.

Task ids start with a letter or digit, so keys starting with ``_`` never collide with a
task's section or file:

* the lead: ``_lead`` (a ``tasks:`` section, or ``_lead.yaml`` in a script directory),
  else, in a directory, ``<lead agent>.yaml``;
* the reviewer of task T: ``_review.T``, else ``_review``, else, in a directory,
  ``<reviewer agent>.yaml``. Each task's reviews get a fresh copy of the script; the
  reviews of one task (one per attempt) continue the same copy, so a script can reject
  the first attempt and accept the second.

A plain script file (one script for every task) has no room for these: the lead and the
reviewer need a ``tasks:`` file or a directory (``ScriptSet``'s other two shapes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.scripts import SUFFIXES, ScriptSetError, section_provider

if TYPE_CHECKING:
    from orchestrator.scripts import ScriptSet

LEAD_KEY = "_lead"
REVIEW_KEY = "_review"


def review_keys(task_id: str) -> list[str]:
    return [f"{REVIEW_KEY}.{task_id}", REVIEW_KEY]


class RoleScripts:
    """Providers for the lead and reviewer sessions, one per ``cache_as`` key per run."""

    def __init__(self, scripts: ScriptSet) -> None:
        self.scripts = scripts
        self._providers: dict[str, Any] = {}

    def provider(self, keys: Sequence[str], agent: str, role: str, cache_as: str) -> Any:
        """The provider for a ``role`` session; the same one for every call with the same
        ``cache_as`` (a retry continues its turns). Raises ``ScriptSetError`` (naming
        what was looked for) or the script's own ``ScriptError``."""
        if cache_as not in self._providers:
            self._providers[cache_as] = self._load(keys, agent, role)
        return self._providers[cache_as]

    def check(self, keys: Sequence[str], agent: str, role: str) -> str | None:
        """The problem with a role's script, or None."""
        from agents.providers.base import ProviderError

        try:
            self._load(keys, agent, role)
        except (ScriptSetError, ProviderError) as exc:
            return str(exc)
        return None

    def _load(self, keys: Sequence[str], agent: str, role: str) -> Any:
        from agents.providers.script import ScriptProvider

        s = self.scripts
        if s.path.is_dir():
            names = [*keys, agent]
            for name in names:
                for suffix in SUFFIXES:
                    candidate = s.path / f"{name}{suffix}"
                    if candidate.is_file():
                        return ScriptProvider(str(candidate))
            raise ScriptSetError(f"--script {s.path}: no script for the {role} (looked for "
                                 f"{', '.join(n + '.yaml' for n in names)})")
        if s.sections is None:
            raise ScriptSetError(
                f"--script {s.path}: one script for every task leaves none for the {role}; "
                f"use a file with tasks: and a {keys[0]}: section, or a directory with "
                f"{keys[0]}.yaml")
        for key in keys:
            if key in s.sections:
                section = s.sections[key]
                if isinstance(section, list):
                    section = {"turns": section}
                if isinstance(section, dict):
                    section = {**s.defaults, **section}
                return section_provider(section, f"{s.path}: tasks.{key}")
        raise ScriptSetError(f"{s.path}: no section for the {role} under tasks: (looked for "
                             f"{', '.join(keys)})")
