"""Secrets never reach the trail: the patterns users' agents actually leak."""

from __future__ import annotations

import pytest

from eventstore.errors import ConfigError
from eventstore.redact import Redactor, mask_url

SECRETS = [
    "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
    "xoxb-123456789012-abcdefghijkl",
    "glpat-abcdefghij0123456789",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_known_token_shapes_are_redacted(secret: str) -> None:
    out = Redactor().redact({"cmd": f"export X={secret} && run", "list": [secret]})
    assert secret not in str(out)
    assert "[REDACTED:" in out["cmd"] and out["cmd"].endswith("&& run")


def test_private_key_block() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----"
    out = Redactor().redact_text(f"before {key} after")
    assert "MIIEow" not in out and out.startswith("before ") and out.endswith(" after")


def test_password_in_url_keeps_user_and_host() -> None:
    out = Redactor().redact_text("postgresql://app:s3cret-pw@db.internal:5432/prod")
    assert "s3cret-pw" not in out and "app:" in out and "@db.internal:5432/prod" in out


def test_secret_named_keys_and_assignments() -> None:
    out = Redactor().redact({"password": "hunter2", "headers": {"Authorization": "Basic abc"},
                             "text": "DB_PASSWORD=correcthorse and api_key: zzzzzzzz",
                             "max_tokens": 512, "token_count": "12"})
    assert out["password"] == "[REDACTED:secret]"
    assert out["headers"]["Authorization"] == "[REDACTED:secret]"
    assert "correcthorse" not in out["text"] and "zzzzzzzz" not in out["text"]
    assert "DB_PASSWORD=" in out["text"]
    assert out["max_tokens"] == 512 and out["token_count"] == "12"


def test_ordinary_text_is_untouched() -> None:
    text = "def test_tokens(): assert tokenize('a b') == ['a', 'b']  # 2 passed in 0.31s"
    assert Redactor().redact_text(text) == text


def test_custom_patterns_and_bad_pattern_error() -> None:
    r = Redactor([r"ACME-\d{6}"])
    assert r.redact_text("id ACME-123456 ok") == "id [REDACTED:custom-0] ok"
    with pytest.raises(ConfigError, match=r"redact.patterns\[0\]"):
        Redactor(["(unclosed"])


def test_disabled_redactor_passes_through() -> None:
    assert Redactor(enabled=False).redact({"password": "x"}) == {"password": "x"}


def test_mask_url() -> None:
    assert mask_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_long_runs_do_not_blow_up() -> None:
    """Regression: unbounded quantifiers took 15 s on 9 KB of ``x-x-...`` (ReDoS)."""
    import time

    r = Redactor()
    for text in ("x-" * 10_000, "x" * 20_000, "password-" * 2_000, "http" * 5_000):
        start = time.perf_counter()
        r.redact_text(text)
        assert time.perf_counter() - start < 2.0, text[:12]
    assert "hunter22" not in r.redact_text("db" * 5_000 + " postgresql://bob:hunter22@db/x")
