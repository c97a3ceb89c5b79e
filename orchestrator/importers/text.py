"""Reading user files that may be mis-encoded, and repairing common mojibake safely.

Stories written on one machine and copied through another often arrive as UTF-8 that
was once decoded as Mac Roman or Windows-1252 and saved again: ``⚠️`` becomes ``‚ö†Ô∏è``.
That text is still valid UTF-8, so nothing fails; it just reads as garbage to a model.

The repair is deliberately narrow. A run of non-ASCII characters is rewritten only where
a piece of it, encoded back in the suspected code page, gives bytes that are valid UTF-8
for a non-ASCII character: the replacement's UTF-8 bytes read in that code page are
exactly the original characters (a round trip by construction). Genuine accented text
(``café``, ``naïve``) does not pass that test and is kept as is. The code page is chosen
per document (the one that explains the most sequences), because one file is garbled one
way. Anything that cannot be explained stays untouched; reading never fails.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

_RUN = re.compile(r"[^\x00-\x7f]{2,}")


def _mac_roman(ch: str) -> bytes | None:
    try:
        return ch.encode("mac_roman")
    except UnicodeEncodeError:
        return None


def _sloppy_cp1252(ch: str) -> bytes | None:
    """Windows-1252, with the five bytes it leaves undefined passed through as Latin-1
    (what lenient decoders produce, so ``\\x81`` and friends still round-trip)."""
    try:
        return ch.encode("cp1252")
    except UnicodeEncodeError:
        return bytes([ord(ch)]) if ord(ch) < 256 else None


CODECS: dict[str, Callable[[str], bytes | None]] = {
    "Mac Roman": _mac_roman, "Windows-1252": _sloppy_cp1252}


def _plausible(ch: str) -> bool:
    """A character a writer plausibly typed: not ASCII, not a control/private/unassigned
    code point, and not a stray combining mark (variation selectors, as in ``⚠️``, are)."""
    if ord(ch) < 0x80:
        return False
    if 0xFE00 <= ord(ch) <= 0xFE0F:
        return True
    return unicodedata.category(ch) not in ("Cc", "Co", "Cn", "Cs", "Mn", "Me")


def _fix_run(run: str, encode: Callable[[str], bytes | None]) -> tuple[str, int]:
    out: list[str] = []
    fixed = 0
    i = 0
    while i < len(run):
        for n in (4, 3, 2):
            chunk = run[i:i + n]
            if len(chunk) < n:
                continue
            parts = [encode(c) for c in chunk]
            if any(p is None or len(p) != 1 for p in parts):
                continue
            raw = b"".join(p for p in parts if p is not None)
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if len(decoded) == 1 and _plausible(decoded):
                out.append(decoded)
                fixed += 1
                i += n
                break
        else:
            out.append(run[i])
            i += 1
    return "".join(out), fixed


def _repair_with(text: str, encode: Callable[[str], bytes | None]) -> tuple[str, int]:
    total = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal total
        fixed, n = _fix_run(m.group(0), encode)
        total += n
        return fixed

    return _RUN.sub(sub, text), total


def repair_mojibake(text: str) -> tuple[str, int, str | None]:
    """``(repaired text, sequences repaired, code page name or None)``."""
    best: tuple[str, int, str | None] = (text, 0, None)
    for name, encode in CODECS.items():
        fixed, n = _repair_with(text, encode)
        if n > best[1]:
            best = (fixed, n, name)
    return best


def read_user_text(path: Path) -> tuple[str, list[str]]:
    """A text file as ``str`` with mojibake repaired, plus warnings saying what was done.

    Raises ``OSError`` only (missing or unreadable file); bad encodings are warnings.
    """
    raw = path.read_bytes()
    warnings: list[str] = []
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("cp1252", errors="replace")
        warnings.append(f"{path}: not UTF-8 (byte {exc.start}); read as Windows-1252")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    repaired, count, codec = repair_mojibake(text)
    if count:
        warnings.append(f"{path}: repaired {count} mis-encoded character sequence(s) "
                        f"(UTF-8 that had been read as {codec})")
    return repaired, warnings
