"""Split a Bash command line into every simple command it would run.

Why a tokenizer of our own and not ``shlex``: ``shlex`` does not know about ``$(...)``,
backticks, process substitution, subshells, heredocs or redirections, and it silently
treats ``a;b`` as one word in POSIX mode. A permission check must see *every* command a
line can start, including ones nested in substitutions inside double quotes, so we parse
the subset of Bash grammar that can start commands and **fail closed** (``ShellSyntaxError``)
on anything we do not understand: unbalanced quotes or parentheses, ``case`` patterns,
function definitions, array assignments, unterminated heredocs.

What we return is flat: top-level commands, commands inside ``$(...)``/backticks/
``<(...)``/``>(...)``/``( ... )``/``{ ...; }``, and commands in unquoted heredoc bodies,
each with its words (quotes removed) and its redirections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_META = frozenset(" \t\n;&|<>()")
_REDIRECT = re.compile(r"(\d*)(&>>|&>|>>|>\||>&|>|<<<|<<-|<<|<>|<&|<)")
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\+?=")
_VARNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]")
#: Words dropped from the front of a command: shell keywords that precede a real command.
LEADING_KEYWORDS = frozenset({"!", "{", "}", "if", "then", "else", "elif", "do", "while",
                              "until", "fi", "done", "esac"})
_ANSI_C = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b",
           "f": "\f", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


class ShellSyntaxError(ValueError):
    """The command line cannot be parsed safely; callers must deny it."""


@dataclass(frozen=True)
class Word:
    text: str  # quotes removed; substitutions kept as their source text
    raw: str  # exactly as written
    quoted: bool = False
    #: True when the shell would change it: unquoted $var, glob, ~, {a,b}, substitutions.
    expands: bool = False


@dataclass(frozen=True)
class Redirect:
    op: str
    fd: str
    kind: str  # write | read | dup | heredoc | herestring | process
    target: Word | None = None


@dataclass(frozen=True)
class SimpleCommand:
    words: tuple[Word, ...]
    assignments: tuple[Word, ...] = ()
    redirects: tuple[Redirect, ...] = ()
    origin: str = "top"  # top | substitution | backtick | process-substitution | subshell | heredoc

    @property
    def argv(self) -> list[str]:
        return [w.text for w in self.words]


@dataclass
class _Builder:
    origin: str
    words: list[Word] = field(default_factory=list)
    assignments: list[Word] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.words or self.assignments or self.redirects)


class _Parser:
    def __init__(self, text: str, out: list[SimpleCommand], depth: int = 0) -> None:
        if depth > 20:
            raise ShellSyntaxError("substitutions nested more than 20 deep")
        self.s = text
        self.i = 0
        self.out = out
        self.depth = depth
        self.heredocs: list[tuple[str, bool, bool]] = []  # delimiter, strip tabs, expand

    # -- command lists -------------------------------------------------------------------
    def parse_list(self, stop: str | None, origin: str) -> None:
        s, n = self.s, len(self.s)
        cur = _Builder(origin)
        while True:
            while self.i < n and s[self.i] in " \t":
                self.i += 1
            if self.i < n - 1 and s[self.i] == "\\" and s[self.i + 1] == "\n":
                self.i += 2
                continue
            if self.i >= n:
                if stop:
                    raise ShellSyntaxError("unclosed '(' or '$(': missing ')'")
                if self.heredocs:
                    raise ShellSyntaxError(f"heredoc {self.heredocs[0][0]!r} has no body")
                self._finish(cur)
                return
            c = s[self.i]
            if c == "#":
                while self.i < n and s[self.i] != "\n":
                    self.i += 1
                continue
            if c == "\n":
                self._finish(cur)
                cur = _Builder(origin)
                self.i += 1
                self._read_heredocs()
                continue
            if c == ")":
                if stop != ")":
                    raise ShellSyntaxError(f"unbalanced ')' at offset {self.i}")
                self._finish(cur)
                self.i += 1
                return
            two = s[self.i:self.i + 2]
            if c in "<>" and self.i + 1 < n and s[self.i + 1] == "(":
                cur.words.append(self._process_substitution())
                continue
            m = _REDIRECT.match(s, self.i)
            if m and (c in "<>" or (c == "&" and two in ("&>",)) or c.isdigit()):
                if c.isdigit() and not m.group(2):
                    m = None
                if m and m.group(2):
                    self._redirect(cur, m)
                    continue
            if two in ("&&", "||", ";;", "|&"):
                self._finish(cur)
                cur = _Builder(origin)
                self.i += 3 if s[self.i:self.i + 3] == ";;&" else 2
                continue
            if c in ";|&":
                self._finish(cur)
                cur = _Builder(origin)
                self.i += 1
                continue
            if c == "(":
                if not cur.empty():
                    raise ShellSyntaxError(
                        f"unexpected '(' at offset {self.i} (function definitions and arrays "
                        "are not supported)")
                self.i += 1
                self.parse_list(")", "subshell")
                continue
            word = self._word()
            if not cur.words and not word.quoted and _ASSIGN.match(word.raw):
                cur.assignments.append(word)
            else:
                cur.words.append(word)

    def _finish(self, cur: _Builder) -> None:
        words = list(cur.words)
        while words and not words[0].quoted and words[0].text in LEADING_KEYWORDS:
            words.pop(0)
        if words or cur.assignments or cur.redirects:
            self.out.append(SimpleCommand(tuple(words), tuple(cur.assignments),
                                          tuple(cur.redirects), cur.origin))

    def _redirect(self, cur: _Builder, m: re.Match[str]) -> None:
        fd, op = m.group(1), m.group(2)
        self.i = m.end()
        if op in ("<<", "<<-"):
            while self.i < len(self.s) and self.s[self.i] in " \t":
                self.i += 1
            delim = self._word()
            if not delim.text:
                raise ShellSyntaxError("heredoc without a delimiter word")
            self.heredocs.append((delim.text, op == "<<-", not delim.quoted))
            cur.redirects.append(Redirect(op, fd, "heredoc", delim))
            return
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1
        if self.s[self.i:self.i + 2] in ("<(", ">("):
            cur.redirects.append(Redirect(op, fd, "process", self._process_substitution()))
            return
        if self.i >= len(self.s) or self.s[self.i] in _META:
            raise ShellSyntaxError(f"redirection {fd}{op} without a target")
        target = self._word()
        if op == "<<<":
            kind = "herestring"
        elif op in (">&", "<&") and re.fullmatch(r"\d+-?|-", target.text):
            kind = "dup"
        elif op in ("<", "<&"):
            kind = "read"
        elif op == "<>":
            kind = "write"
        else:
            kind = "write"
        cur.redirects.append(Redirect(op, fd, kind, target))

    def _read_heredocs(self) -> None:
        pending = list(self.heredocs)
        self.heredocs.clear()  # shared with enclosing $(...) parsers
        for delim, strip, expand in pending:
            body: list[str] = []
            while True:
                if self.i >= len(self.s):
                    raise ShellSyntaxError(f"heredoc not terminated by {delim!r}")
                end = self.s.find("\n", self.i)
                end = len(self.s) if end == -1 else end
                line = self.s[self.i:end]
                self.i = min(end + 1, len(self.s))
                if (line.lstrip("\t") if strip else line) == delim:
                    break
                body.append(line)
            if expand:
                self._scan_expansions("\n".join(body), "heredoc")

    # -- words ---------------------------------------------------------------------------
    def _word(self) -> Word:
        s, n = self.s, len(self.s)
        start = self.i
        text: list[str] = []
        quoted = expands = False
        while self.i < n and s[self.i] not in _META:
            c = s[self.i]
            if c == "'":
                end = s.find("'", self.i + 1)
                if end == -1:
                    raise ShellSyntaxError(f"unterminated single quote at offset {self.i}")
                text.append(s[self.i + 1:end])
                self.i = end + 1
                quoted = True
            elif c == '"':
                self.i += 1
                text.append(self._dquote_body(closing=True))
                quoted = True
            elif c == "\\":
                if self.i + 1 >= n:
                    raise ShellSyntaxError("command ends with a lone backslash")
                if s[self.i + 1] != "\n":
                    text.append(s[self.i + 1])
                self.i += 2
                quoted = True
            elif c == "$" and s.startswith("$'", self.i):
                text.append(self._ansi_c())
                quoted = True
            elif c == "$" and s.startswith('$"', self.i):
                self.i += 1
            elif c == "$":
                text.append(self._dollar())
                expands = True
            elif c == "`":
                text.append(self._backtick())
                expands = True
            else:
                if c in "*?[{" or (c == "~" and self.i == start):
                    expands = True
                text.append(c)
                self.i += 1
        return Word("".join(text), s[start:self.i], quoted, expands)

    def _dquote_body(self, closing: bool) -> str:
        """Read a double-quoted body (after the opening quote); substitutions are parsed."""
        s, n = self.s, len(self.s)
        text: list[str] = []
        while True:
            if self.i >= n:
                if closing:
                    raise ShellSyntaxError("unterminated double quote")
                return "".join(text)
            c = s[self.i]
            if c == '"' and closing:
                self.i += 1
                return "".join(text)
            if c == "\\" and self.i + 1 < n and s[self.i + 1] in '$`"\\\n':
                if s[self.i + 1] != "\n":
                    text.append(s[self.i + 1])
                self.i += 2
            elif c == "$":
                text.append(self._dollar())
            elif c == "`":
                text.append(self._backtick())
            else:
                text.append(c)
                self.i += 1

    def _dollar(self) -> str:
        s = self.s
        start = self.i
        if s.startswith("$((", self.i):
            inner = self._balanced(self.i + 1, "(", ")")
            self._scan_expansions(inner[2:-2], "substitution")
        elif s.startswith("$(", self.i):
            self.i += 2
            sub = _Parser(s, self.out, self.depth + 1)
            sub.i = self.i
            sub.heredocs = self.heredocs
            sub.parse_list(")", "substitution")
            self.i = sub.i
        elif s.startswith("${", self.i):
            inner = self._balanced(self.i + 1, "{", "}")
            self._scan_expansions(inner[1:-1], "substitution")
        else:
            m = _VARNAME.match(s, self.i + 1)
            self.i = m.end() if m else self.i + 1
        return s[start:self.i]

    def _balanced(self, pos: int, open_: str, close: str) -> str:
        """Source from ``pos`` (an ``open_``) to its matching ``close``, quotes respected."""
        s, depth, i = self.s, 0, pos
        while i < len(s):
            c = s[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                j = s.find("'", i + 1)
                if j == -1:
                    raise ShellSyntaxError("unterminated single quote")
                i = j + 1
                continue
            if c == open_:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    self.i = i + 1
                    return s[pos:i + 1]
            i += 1
        raise ShellSyntaxError(f"unclosed '{open_}' in an expansion")

    def _backtick(self) -> str:
        s = self.s
        start = self.i
        i = self.i + 1
        inner: list[str] = []
        while True:
            if i >= len(s):
                raise ShellSyntaxError("unterminated backtick substitution")
            c = s[i]
            if c == "\\" and i + 1 < len(s) and s[i + 1] in "`\\$":
                inner.append(s[i + 1])
                i += 2
                continue
            if c == "`":
                break
            inner.append(c)
            i += 1
        self.i = i + 1
        _Parser("".join(inner), self.out, self.depth + 1).parse_list(None, "backtick")
        return s[start:self.i]

    def _ansi_c(self) -> str:
        s, i = self.s, self.i + 2
        out: list[str] = []
        while True:
            if i >= len(s):
                raise ShellSyntaxError("unterminated $'...' string")
            c = s[i]
            if c == "'":
                break
            if c == "\\" and i + 1 < len(s):
                nxt = s[i + 1]
                m = re.match(r"x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{1,4})|U([0-9A-Fa-f]{1,8})|"
                             r"([0-7]{1,3})", s[i + 1:])
                if nxt in _ANSI_C:
                    out.append(_ANSI_C[nxt])
                    i += 2
                elif m:
                    out.append(chr(int(next(g for g in m.groups() if g), 8 if m.group(4) else 16)
                                   % 0x110000))
                    i += 1 + m.end()
                else:
                    out.append(c + nxt)
                    i += 2
                continue
            out.append(c)
            i += 1
        self.i = i + 1
        return "".join(out)

    def _process_substitution(self) -> Word:
        start = self.i
        self.i += 2
        sub = _Parser(self.s, self.out, self.depth + 1)
        sub.i = self.i
        sub.parse_list(")", "process-substitution")
        self.i = sub.i
        raw = self.s[start:self.i]
        return Word(raw, raw, False, True)

    def _scan_expansions(self, text: str, origin: str) -> None:
        """Find command substitutions in text the shell expands (heredoc bodies, ${...})."""
        if "$" not in text and "`" not in text:
            return
        p = _Parser(text, self.out, self.depth + 1)
        p._dquote_body(closing=False)


def split_commands(command: str) -> list[SimpleCommand]:
    """Every simple command ``command`` can run. Raises ShellSyntaxError (deny it)."""
    if "\x00" in command:
        raise ShellSyntaxError("NUL byte in command")
    out: list[SimpleCommand] = []
    _Parser(command, out).parse_list(None, "top")
    return out
