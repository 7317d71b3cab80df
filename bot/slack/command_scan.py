"""Slash-command text split into words: options, positional words and a verbatim tail.

The command language itself (which verbs, which options, what each means) is
``bot.slack.commands``; this is only the scanner under it, and the one error it
raises, :class:`CommandError`, which carries the usage line of the command being
attempted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.errors import Rejected

__all__ = ["OPTION", "CommandError", "Scanned", "scan", "shown", "split_verb"]

# Anything shaped like an option: "-x", "--word", "--word=value". A lone "-" or
# "-5" is an ordinary word (people write "-" as a dash in reasons).
OPTION = re.compile(r"--?[A-Za-z][A-Za-z-]*(=.*)?")
_WORD = re.compile(r"\S+")
# Error messages echo what was typed, cut short so the reply stays readable.
_ECHO_LIMIT = 40


class CommandError(Rejected):
    """A command the user got wrong; ``problem`` says what, ``usage`` how to write it."""

    def __init__(self, problem: str, usage: str) -> None:
        self.problem = problem
        self.usage = usage
        super().__init__(f"{problem}\nUsage: {usage}")


@dataclass(frozen=True)
class _Word:
    text: str
    start: int


@dataclass
class Scanned:
    """Options and positional words of one command, with the verbatim tail kept.

    ``options`` maps each canonical option name to its value, ``flags`` holds the
    canonical names of the flags given; ``usage`` goes into every error.
    """

    source: str
    usage: str
    options: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    positional: list[str] = field(default_factory=list)
    rest: str | None = None  # verbatim text after the last positional word taken


def _words(text: str) -> list[_Word]:
    return [_Word(m.group(), m.start()) for m in _WORD.finditer(text)]


def scan(
    text: str,
    usage: str,
    *,
    valued: dict[str, str],
    flags: dict[str, str],
    positional: int,
    tail: bool = False,
) -> Scanned:
    """Split ``text`` into options and positional words.

    ``valued``/``flags`` map every accepted spelling to a canonical name. At most
    ``positional`` positional words are taken; with ``tail`` the text from the
    next non-option word on is kept verbatim in ``rest``. Raises
    :class:`CommandError` for an unknown, repeated or valueless option and for a
    word too many.
    """
    found = Scanned(text, usage)
    words = iter(_words(text))
    for word in words:
        if word.text == "--" and tail:
            found.rest = text[word.start + 2 :].strip()
            return found
        if OPTION.fullmatch(word.text):
            _take_option(found, word.text, words, valued, flags)
            continue
        if len(found.positional) < positional:
            found.positional.append(word.text)
            continue
        if tail:
            found.rest = text[word.start :].strip()
            return found
        raise CommandError(f"unexpected {word.text!r}", usage)
    return found


def _take_option(
    scan: Scanned,
    spelled: str,
    words: Iterator[_Word],
    valued: dict[str, str],
    flags: dict[str, str],
) -> None:
    name, eq, inline = spelled.partition("=")
    if name in flags and not eq:
        canonical = flags[name]
        if canonical in scan.flags:
            raise CommandError(f"{name} given twice", scan.usage)
        scan.flags.add(canonical)
        return
    if name not in valued:
        raise CommandError(f"unknown option {name!r}", scan.usage)
    canonical = valued[name]
    if canonical in scan.options:
        raise CommandError(f"{name} given twice", scan.usage)
    value = inline if eq else _option_value(name, words, scan.usage)
    if not value:
        raise CommandError(f"{name} needs a value", scan.usage)
    scan.options[canonical] = value


def _option_value(name: str, words: Iterator[_Word], usage: str) -> str:
    word = next(words, None)
    if word is None or OPTION.fullmatch(word.text) or word.text == "--":
        raise CommandError(f"{name} needs a value", usage)
    return word.text


def shown(value: str) -> str:
    """``value`` quoted for an error message, cut short so the reply stays readable."""
    quoted = repr(value)
    return quoted if len(quoted) <= _ECHO_LIMIT else quoted[: _ECHO_LIMIT - 1] + "…"


def split_verb(text: str) -> tuple[str, str]:
    """The first word (lower-cased) and the verbatim rest."""
    stripped = text.strip()
    match = _WORD.match(stripped)
    if match is None:
        return "", ""
    return match.group().lower(), stripped[match.end() :]
