"""What the two HTTP providers share: settings, key masking and error classification.

Both official SDKs raise the same family of exceptions (status errors carrying the HTTP
response, connection errors, timeouts, response validation errors); mapping them to our
two classes happens here once, so "transient" means the same thing for every provider:
429, 408, 409, every 5xx (529 "overloaded" included), timeouts and dropped connections.
Everything else (bad key, bad request, unknown model, a reply we cannot parse) is a
``ProviderError`` the loop does not retry.
"""

from __future__ import annotations

import email.utils
import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from agents.providers.base import ProviderError, TransientProviderError

TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
TRANSIENT_KINDS = frozenset({"overloaded_error", "rate_limit_error", "api_error", "timeout_error"})


class HTTPProviderSettings(BaseModel):
    """``providers.<name>`` in orchestrail.yaml (all optional; env vars fill the gaps)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    #: Name of the environment variable holding the key (the key itself never goes in a file).
    api_key_env: str | None = None
    timeout: float = 600.0
    stream: bool = False
    headers: dict[str, str] = {}
    #: openai only: ``max_tokens`` (compatible servers) or ``max_completion_tokens`` (o-series).
    max_tokens_param: str = "max_tokens"
    #: openai only: ask for usage in the last stream chunk (``stream_options.include_usage``).
    stream_usage: bool = True


def load_settings(provider: str, config: Any | None = None) -> HTTPProviderSettings:
    """Read ``providers.<provider>`` from orchestrail.yaml; errors name the file and key."""
    if config is None:
        from eventstore.config import load_config

        config = load_config()
    section = ((config.model_extra or {}).get("providers") or {})
    where = str(config.path) if getattr(config, "path", None) else "orchestrail.yaml"
    if not isinstance(section, dict):
        raise ProviderError(f"{where}: providers: must be a mapping")
    raw = section.get(provider) or {}
    try:
        return HTTPProviderSettings.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(
            f"providers.{provider}.{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors())
        raise ProviderError(f"{where}: {details}") from None


def mask_key(key: str | None) -> str:
    """Enough of a key to tell two apart in an error message, never enough to use it."""
    if not key:
        return "(none)"
    return f"...{key[-4:]}" if len(key) >= 12 else "***"


def retry_after(headers: Any) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _body_message(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            kind = err.get("type") or err.get("code")
            msg = err.get("message") or ""
            return f"{kind}: {msg}" if kind else str(msg)
        return str(err)
    return str(body)[:300] if body else ""


def classify(exc: Exception, sdk: Any, *, provider: str, base_url: str,
             key: str | None) -> ProviderError:
    """Map one SDK exception to ours. ``sdk`` is the imported ``anthropic``/``openai`` module."""
    where = f"{provider} at {base_url} (key {mask_key(key)})"
    if isinstance(exc, sdk.APITimeoutError):
        return TransientProviderError(f"{where}: request timed out")
    if isinstance(exc, sdk.APIConnectionError):
        return TransientProviderError(f"{where}: connection failed: {exc.__cause__ or exc}")
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        detail = _body_message(getattr(exc, "body", None)) or str(exc)
        msg = f"{where}: HTTP {status} {detail}".rstrip()
        body = getattr(exc, "body", None)
        err = body.get("error") if isinstance(body, dict) else None
        kind = err.get("type") if isinstance(err, dict) else None
        # An error event inside a 200 stream carries the real cause only in its body.
        if status in TRANSIENT_STATUS or status >= 500 or (
                status < 400 and kind in TRANSIENT_KINDS):
            return TransientProviderError(msg, status=status,
                                          retry_after=retry_after(exc.response.headers))
        hint = {401: " (check the API key)", 403: " (the key may lack access)",
                404: " (check the model id and base_url)"}.get(status, "")
        return ProviderError(msg + hint, status=status)
    if isinstance(exc, sdk.APIResponseValidationError):
        return ProviderError(f"{where}: the reply does not parse as an API response: {exc}",
                             status=getattr(exc, "status_code", None))
    root = type(exc).__module__.split(".")[0]
    if root in ("httpx", "httpx2", "httpcore", "h11"):  # a stream cut mid-reply
        return TransientProviderError(f"{where}: connection dropped: {exc}")
    return ProviderError(f"{where}: unusable reply ({type(exc).__name__}: {exc})")


def find_key(explicit: str | None, env_name: str | None, default_env: str) -> str | None:
    return explicit or os.environ.get(env_name or default_env)
