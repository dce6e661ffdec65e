"""The exceptions collapsecheck raises, each tied to the exit code the CLI maps it to.

Exit codes (documented in the README):

====  ==========================================================
0     the gate passes
1     the gate fails (``--fail-on``)
2     a usage or configuration error (:class:`UsageError`)
3     the checkpoint cannot be loaded or evaluated (:class:`LoadError`)
====  ==========================================================

Every message is one line that says what is wrong and how to fix it.
"""
from __future__ import annotations

import difflib
from typing import Iterable

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_LOAD = 3


class CollapsecheckError(Exception):
    """Base class: a one-line, user-facing problem with an exit code."""

    exit_code = EXIT_USAGE


class UsageError(CollapsecheckError):
    """The command line, a config file or an input file is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class LoadError(CollapsecheckError):
    """The checkpoint cannot be loaded or evaluated (exit 3)."""

    exit_code = EXIT_LOAD


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name when it has none), cut at ``limit``."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def check_choice(what: str, value: str, choices: Iterable[str]) -> str:
    """Raise :class:`UsageError` unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise UsageError(
            f"{what} must be one of {', '.join(choices)}, but got '{value}'." + did_you_mean(value, choices)
        )
    return value
