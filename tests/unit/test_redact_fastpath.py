"""The redactor's fast path (skip the walk when no rule can fire) changes no result.

``Redactor.redact`` first dumps the value to JSON and looks for the literals every rule
needs; these tests compare it with the full walk on values that do and do not hold
secrets, in every position a secret can hide (values, keys, lists, nesting, odd case).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from eventstore.redact import Redactor

SECRETS = (
    "sk-ant-" + "a" * 30, "sk-proj-" + "b" * 30, "AKIA" + "A" * 16, "ghp_" + "c" * 36,
    "glpat-" + "d" * 22, "xoxb-" + "1" * 12, "AIza" + "e" * 35, "sk_live_" + "f" * 20,
    "eyJ" + "g" * 10 + ".eyJ" + "h" * 10 + "." + "i" * 10, "Bearer " + "j" * 20,
    "postgres://u:pw123@host/db", "password=hunter22", "API_KEY: abcdefgh", "ſecret=abcdefgh",
    "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----",
)
SECRET_KEYS = ("password", "Authorization", "x-api-key", "client_secret", "TOKEN", "my_api_key")
PLAIN = ("pytest -q tests/unit", "/work/repo", "the build passed", "call-7", "tool.completed")


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.random()
    if depth < 3 and kind < 0.3:
        return {rng.choice(PLAIN + SECRET_KEYS[:1] * (rng.random() < 0.1)): _value(rng, depth + 1)
                for _ in range(rng.randint(0, 4))}
    if depth < 3 and kind < 0.45:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind < 0.55:
        return rng.choice((1, 2.5, None, True))
    if rng.random() < 0.15:
        return rng.choice(PLAIN) + " " + rng.choice(SECRETS) + " " + rng.choice(PLAIN)
    return rng.choice(PLAIN)


@pytest.mark.parametrize("seed", range(20))
def test_fast_path_agrees_with_full_walk(seed: int) -> None:
    rng = random.Random(seed)
    r = Redactor()
    for _ in range(200):
        value = {"data": _value(rng)}
        if rng.random() < 0.1:
            value[rng.choice(SECRET_KEYS)] = "s3cr3t-value"
        assert r.redact(value) == r._walk(value, None)


def test_every_secret_kind_still_redacted_through_the_fast_path() -> None:
    r = Redactor()
    for secret in SECRETS:
        out = r.redact({"output": f"x {secret} y"})
        assert secret not in out["output"], secret
    for key in SECRET_KEYS:
        assert r.redact({key: "value"}) == {key: "[REDACTED:secret]"}, key


def test_plain_payload_is_returned_unchanged_and_custom_patterns_still_apply() -> None:
    value = {"tool": "Bash", "input": {"command": "pytest -q"}, "output": "ok " * 300}
    assert Redactor().redact(value) is value
    custom = Redactor([r"internal-\d{4}"])
    assert custom.redact({"o": "see internal-1234"}) == {"o": "see [REDACTED:custom-0]"}


def test_prechecks_cover_exactly_the_literals() -> None:
    """``Redactor._clean`` looks for exactly ``_BUILTIN_HINTS`` (plus ``://`` behind ``@``)
    and ``_KEY_KEYWORDS``; every gate occurs in its literals, every anchor at its offset."""
    from eventstore import redact

    hints: list[str] = [*redact._PLAIN, *redact._G_LITERALS]
    keywords: list[str] = []
    for gate, lits in redact._GATED:
        assert all(gate in lit for lit in lits)
        hints += lits
    for gate, lits in redact._LOWER_GATED:
        assert all(gate in lit and lit == lit.lower() for lit in lits)
        keywords += lits
    for anchor, probes in redact._ANCHORED:
        for offset, lit, on_lower in probes:
            assert lit[offset] == anchor, lit
            (keywords if on_lower else hints).append(lit)
    assert sorted(hints) == sorted(redact._BUILTIN_HINTS)
    assert sorted(keywords) == sorted(redact._KEY_KEYWORDS)


def test_clean_agrees_with_testing_every_literal() -> None:
    """The gated pre-check says "clean" exactly when no hint and no keyword occurs."""
    from eventstore import redact

    rng = random.Random(5)
    pieces = [*redact._BUILTIN_HINTS, *redact._KEY_KEYWORDS, "KEY", "Token", "PassW", "sEcReT",
              "AUTHORIZATION", "\u017f", "ſecret", "\u212aey", "Key", "x", "k", "_", "-", "gh",
              "g", "h", "@", "://", "a@b", "http://u:p@h", "plain words ", "é", "J", "A", "G"]
    r = Redactor()
    speedups = _speedups()
    for n in range(6000):  # some long enough for 3+ anchors (plain searches then)
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6 if n % 3 else 40)))
        folded = text.casefold()
        expected = not (any(h in text for h in redact._BUILTIN_HINTS)
                        or ("@" in text and "://" in text)
                        or any(k in folded for k in redact._KEY_KEYWORDS))
        assert r._clean(text) is expected, text
        assert r._clean_py(text) is expected, text
        assert speedups.ascii_clean(text) is (expected if text.isascii() else None), text


def _speedups() -> Any:
    """The C pre-check. Built by every install that has a C compiler (CI has one), so a
    missing extension fails here instead of leaving ``_clean``'s C path untested."""
    from eventstore import _speedups, redact

    assert redact._ascii_clean is _speedups.ascii_clean
    return _speedups


def test_speedups_clean_agrees_on_random_ascii_and_the_edges() -> None:
    """Random printable ASCII with literals spliced in, in every case, at both ends."""
    from eventstore import redact

    speedups = _speedups()
    rng = random.Random(11)
    literals = [*redact._BUILTIN_HINTS, *redact._KEY_KEYWORDS, "://", "@"]
    alphabet = "".join(chr(c) for c in range(32, 127))
    for n in range(20000):
        parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))]
        for _ in range(rng.randint(0, 3)):
            lit = rng.choice(literals)
            if rng.random() < 0.3:
                lit = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in lit)
            if rng.random() < 0.3:
                lit = lit[: rng.randint(0, len(lit))]  # a prefix: must not count
            parts.append(lit)
        text = "".join(parts) if n % 2 else "".join(reversed(parts))
        folded = text.lower()
        expected = not (any(h in text for h in redact._BUILTIN_HINTS)
                        or ("@" in text and "://" in text)
                        or any(k in folded for k in redact._KEY_KEYWORDS))
        assert speedups.ascii_clean(text) is expected, text
    assert speedups.ascii_clean("") is True
    assert speedups.ascii_clean("caf\u00e9 key") is None  # not ASCII: the Python path
    with pytest.raises(TypeError):
        speedups.ascii_clean(b"key")


def test_speedups_configure_refuses_what_it_cannot_hold() -> None:
    speedups = _speedups()
    from eventstore import redact

    try:
        with pytest.raises(ValueError, match="ASCII"):
            speedups.configure(["k\u00e9y"], [])
        with pytest.raises(ValueError, match="2 to 64"):
            speedups.configure(["k"], [])
        with pytest.raises(ValueError, match="at most 64"):
            speedups.configure([f"x{i}" for i in range(65)], [])
    finally:
        speedups.configure(redact._BUILTIN_HINTS, redact._KEY_KEYWORDS)
    assert speedups.ascii_clean("an sk-proj key") is False


@pytest.mark.parametrize("seed", range(10))
def test_encode_agrees_with_the_full_walk_and_returns_canonical_text(seed: int) -> None:
    from eventstore.canonical import canonical_json

    rng = random.Random(100 + seed)
    r = Redactor()
    for _ in range(200):
        value = {"data": _value(rng)}
        if rng.random() < 0.1:
            value[rng.choice(SECRET_KEYS)] = "s3cr3t-value"
        out, text = r.encode(value)
        assert out == r._walk(value, None)
        assert text == canonical_json(out)
        if out == value:
            assert out is value
