"""Secret redaction, applied to every event before it is stored or hashed.

Why before hashing: the trail is append-only, so a secret that reaches it cannot be
taken back without breaking the chain. Patterns cover the credentials coding agents
actually handle (model API keys, cloud and VCS tokens, private keys, passwords in URLs)
plus values under secret-looking keys; users add their own patterns in orchestrail.yaml.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from eventstore.canonical import canonical_json, canonical_many
from eventstore.errors import ConfigError

BUILTIN_PATTERNS: dict[str, str] = {
    "private-key": (
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?"
        r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)"
    ),
    "anthropic-key": r"sk-ant-[A-Za-z0-9_\-]{16,}",
    "openai-key": r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
    "aws-access-key": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "github-token": r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})\b",
    "gitlab-token": r"\bglpat-[A-Za-z0-9_\-]{20,}\b",
    "slack-token": r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
    "google-api-key": r"\bAIza[0-9A-Za-z_\-]{35}\b",
    "stripe-key": r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}\b",
    "jwt": r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b",
    "bearer": r"(?<=[Bb]earer )[A-Za-z0-9._~+/=\-]{12,}",
}

#: Literals at least one of which occurs in any match of a builtin pattern. ``str.__contains__``
#: finds them all in a few microseconds, while the combined alternation costs about 0.5 ms per
#: KB of text that holds no secret at all (most of it): skip the regex when none is present.
_BUILTIN_HINTS = (
    "-----BEGIN ", "sk-", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
    "glpat-", "xox", "AIza", "k_live_", "k_test_", "eyJ", "earer ",
)

#: ``scheme://user:password@host`` keeps the user, hides the password.
#: Quantifiers are bounded or possessive on purpose: an unbounded ``*`` before a literal made
#: these quadratic-to-cubic on long runs such as ``x-x-x-...`` (15 s for 9 KB).
_URL_PASSWORD = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^:/@\s]*:)(?P<pw>[^@\s/]+)(?=@)")
#: ``password=...``, ``"api_key": "..."``, ``TOKEN: ...`` in free text.
_ASSIGNMENT = re.compile(
    r"(?i)(?P<key>\b[A-Za-z0-9_\-]{0,64}(?:password|passwd|secret|api[_-]?key|access[_-]?key|"
    r"auth[_-]?token|token)[A-Za-z0-9_\-]{0,64}+)(?P<sep>\s*[=:]\s*[\"']?)(?P<val>[^\s\"',;&]{6,})"
)
#: How ``Redactor._clean`` finds the literals of ``_BUILTIN_HINTS`` and ``_KEY_KEYWORDS``
#: cheaply. A substring search costs 0.3 to 1 us per KB (short needles the most), while a
#: one-character search (memchr) costs 0.02 us. So:
#: - gated: ``(gate, literals)``, the literals (which all contain ``gate``) are searched
#:   only when the gate character occurs at all;
#: - anchored: ``(anchor, probes)``, each probe ``(offset, literal, on_lower)`` has
#:   ``literal[offset] == anchor``; the few places the anchor occurs are visited (memchr)
#:   and the literal compared right there. Any occurrence of the literal puts the anchor
#:   at its offset, so this finds exactly what a search would. Three places or more:
#:   plain searches instead (each visit costs a few Python operations);
#: - plain: searched directly (long needles, where a search skips ahead fast).
#: ``on_lower`` literals are keywords, matched in the lowered text (ASCII text only; other
#: text takes the casefold path). ``test_prechecks_cover_exactly_the_literals`` holds
#: these tables to ``_BUILTIN_HINTS`` and ``_KEY_KEYWORDS``; ``_clean`` spells the gated
#: ones out (a loop with ``any()`` cost more than the searches), and
#: ``test_clean_agrees_with_testing_every_literal`` holds it to the literals themselves.
_GATED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("G", ("-----BEGIN ",)),
    ("A", ("AKIA", "ASIA", "AIza")),
    ("J", ("eyJ",)),
    ("x", ("xox",)),
)
#: - searched together: one regex over literals sharing a first character. ``re`` factors
#:   the common ``g`` out and scans for it in C, which beats a ``"-"`` gate plus a search
#:   for ``glpat-`` and a ``"_"`` gate plus searches for ``gh`` and ``github_pat_`` (a
#:   two-character needle scans slowly): 0.5 against 1.5 us per KB of prose.
_G_LITERALS = ("glpat-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
_G_SEARCH = re.compile("|".join(map(re.escape, _G_LITERALS))).search
_PLAIN = ("earer ",)
Probe = tuple[int, str, bool]
_K_PROBES: tuple[Probe, ...] = ((1, "sk-", False), (0, "k_live_", False),
                                 (0, "k_test_", False), (0, "key", True), (2, "token", True))
_ANCHORED = (("k", _K_PROBES),)
#: Keywords searched in the lowered text, behind a one-character gate where they have a
#: letter that plain prose often lacks.
_LOWER_GATED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("s", ("secret",)),  # (a gate of no use on prose, kept for the structure)
    ("w", ("passw",)),
    ("z", ("authorization",)),
)


def _anchored(text: str, low: str, anchor: str, probes: tuple[Probe, ...]) -> bool:
    """Does any probe's literal occur? (``low`` is ``text.lower()``, same length: ASCII.)

    A negative start (an anchor too close to the beginning) makes ``startswith`` look
    near the end instead: at worst a false "found", which only costs the full walk.
    """
    i = low.find(anchor)
    if i < 0:
        return False
    if low.find(anchor, low.find(anchor, i + 1) + 1) > i:  # 3+ places: search instead
        return any(lit in (low if lower else text) for _, lit, lower in probes)
    while i >= 0:
        for offset, lit, lower in probes:
            if (low if lower else text).startswith(lit, i - offset):
                return True
        i = low.find(anchor, i + 1)
    return False


#: Cheap pre-check: most text has none of the keywords, so skip ``_ASSIGNMENT`` entirely.
_ASSIGNMENT_KEYWORDS = ("passw", "secret", "key", "token")
#: Literals every secret key (``_SECRET_KEY``) and assignment keyword contains, casefolded.
_KEY_KEYWORDS = (*_ASSIGNMENT_KEYWORDS, "authorization")
#: No circular check (a third faster): a cycle still ends in RecursionError, caught below.
_DUMP = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
#: Object keys whose whole value is secret.
_SECRET_KEY = re.compile(
    r"(?i)^(?:.*(?:password|passwd|secret|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"auth[_-]?token|session[_-]?token|refresh[_-]?token|client[_-]?secret)|authorization|"
    r"x-api-key|token)$"
)


def _load_speedups() -> Callable[[str], bool | None] | None:
    """The C pre-check (``eventstore/_speedups.c``), given this module's literals, if built.

    The extension is optional: a machine without a C compiler installs the package
    without it and every caller gets the same answers from ``Redactor._clean_py``.
    """
    try:
        from eventstore import _speedups
    except ImportError:
        return None
    _speedups.configure(_BUILTIN_HINTS, _KEY_KEYWORDS)
    return _speedups.ascii_clean


_ascii_clean = _load_speedups()


def extra_patterns_given(patterns: dict[str, str]) -> bool:
    """Custom patterns have no known literals, so they always run the full regex."""
    return len(patterns) != len(BUILTIN_PATTERNS)


def mask(kind: str) -> str:
    return f"[REDACTED:{kind}]"


class Redactor:
    """Replaces secrets in every string of an event's ``data`` and ``metadata``."""

    def __init__(self, extra_patterns: Iterable[str] = (), *, enabled: bool = True) -> None:
        self.enabled = enabled
        patterns = dict(BUILTIN_PATTERNS)
        for i, pat in enumerate(extra_patterns):
            try:
                re.compile(pat)
            except re.error as exc:
                raise ConfigError(
                    f"redact.patterns[{i}]: invalid regular expression {pat!r}: {exc}"
                ) from None
            patterns[f"custom-{i}"] = pat
        self._hints: tuple[str, ...] | None = None if extra_patterns_given(patterns) else (
            _BUILTIN_HINTS
        )
        self._combined = re.compile(
            "|".join(f"(?P<{name.replace('-', '_')}>{pat})" for name, pat in patterns.items())
        )

    def redact_text(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        if self._hints is not None and not any(h in text for h in self._hints):
            out = text
        else:
            out = self._combined.sub(
                lambda m: mask((m.lastgroup or "secret").replace("_", "-")), text)
        if "://" in out:
            out = _URL_PASSWORD.sub(lambda m: m.group("pre") + mask("password"), out)
        folded = out.casefold()  # casefold, not lower: (?i) also matches "ſ" and "K"
        if not any(k in folded for k in _ASSIGNMENT_KEYWORDS):
            return out
        return _ASSIGNMENT.sub(
            lambda m: m.group(0) if m.group("val").startswith("[REDACTED")
            else m.group("key") + m.group("sep") + mask("secret"),
            out,
        )

    def redact(self, value: Any, key: str | None = None) -> Any:
        if not self.enabled:
            return value
        if key is None and isinstance(value, dict | list) and (
                not value or self._nothing_to_redact(value)):
            return value
        return self._walk(value, key)

    def encode(self, value: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Redact an event's ``data`` or ``metadata`` and return it with its canonical JSON.

        The append path needs the canonical text anyway (it is stored and hashed), so the
        pre-check runs on that text and the payload is encoded once; only a payload in
        which some rule may fire is walked, and re-encoded if the walk changed it. The
        value returned is ``value`` itself when nothing was redacted.
        """
        return self._finish(value, canonical_json(value))

    def encode_many(self, values: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """``encode`` of each value (an append's payloads), with the JSON made as one batch."""
        finish = self._finish
        return [finish(v, t) for v, t in zip(values, canonical_many(values), strict=True)]

    def _finish(self, value: dict[str, Any], text: str) -> tuple[dict[str, Any], str]:
        """``encode`` given ``text``, the canonical JSON of ``value``."""
        if not self.enabled or not value or (self._hints is not None and self._clean(text)):
            return value, text
        redacted = self._walk(value, None)
        if redacted == value:
            return value, text
        return redacted, canonical_json(redacted)

    def _clean(self, text: str) -> bool:
        """True when no builtin rule can fire in this JSON text of a value (see below).

        Exactly: no literal of ``_BUILTIN_HINTS`` occurs, not both ``@`` and ``://``, and
        no ``_KEY_KEYWORDS`` keyword occurs in the casefolded text. ASCII text goes to the
        C helper when it is built (one pass, about a tenth of the cost); other text, or
        no helper, to ``_clean_py``.
        """
        if _ascii_clean is not None:
            found = _ascii_clean(text)
            if found is not None:
                return found
        return self._clean_py(text)

    def _clean_py(self, text: str) -> bool:
        """``_clean`` in Python (the tables above say how each literal is looked for)."""
        t = text  # _GATED and _PLAIN written out: loops and any() cost more than searches
        if (("G" in t and "-----BEGIN " in t)
                or ("A" in t and ("AKIA" in t or "ASIA" in t or "AIza" in t))
                or ("J" in t and "eyJ" in t)
                or ("x" in t and "xox" in t)
                or _G_SEARCH(t) is not None
                or "earer " in t
                or ("@" in t and "://" in t)):  # a password in a URL needs both
            return False
        if not t.isascii():  # casefold, not lower: (?i) also matches "ſ" and "K"
            if any(h in t for h in _BUILTIN_HINTS):
                return False
            folded = t.casefold()
            return not any(k in folded for k in _KEY_KEYWORDS)
        low = t.lower()  # ASCII (O(1) to know): casefold is lower, lengths stay equal
        return not (("s" in low and "secret" in low)  # _LOWER_GATED
                    or ("w" in low and "passw" in low)
                    or ("z" in low and "authorization" in low)
                    or _anchored(t, low, "k", _K_PROBES))

    def _nothing_to_redact(self, value: Any) -> bool:
        """True when no builtin rule can fire anywhere in ``value`` (the common case).

        One C-speed JSON dump and a few substring searches replace a walk that runs
        several regexes per string. Every rule needs one of the literals looked for here
        (a builtin hint, ``://``, or a keyword of a secret key or assignment), and JSON
        escaping never splits those literals, so a miss is certain. Custom patterns have
        no known literals: with any of them the full walk always runs.
        """
        if self._hints is None:
            return False
        try:
            text = _DUMP(value)
        except (TypeError, ValueError, RecursionError):
            return False
        return self._clean(text)

    def _walk(self, value: Any, key: str | None) -> Any:
        if isinstance(value, str):
            if key is not None and _SECRET_KEY.match(key) and value:
                return mask("secret")
            return self.redact_text(value)
        if isinstance(value, dict):
            return {k: self._walk(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, None) for v in value]
        return value


def mask_url(url: str) -> str:
    """Hide the password in a store URL before it reaches a log line or an error."""
    return _URL_PASSWORD.sub(lambda m: m.group("pre") + "***", url)
