"""The exceptions collapsecheck raises, each tied to the exit code the CLI maps it to.

Exit codes (documented in the README and docs/ci.md):

====  ==========================================================================
0     the gate passes
1     the gate fails (``--fail-on``, ``--max-regression``)
2     a usage or configuration error (:class:`UsageError`)
3     the checkpoint cannot be loaded or evaluated (:class:`LoadError`; the model's
      own code raising while it is evaluated: :class:`ModelError`)
4     out of memory (:class:`OutOfMemory`), with the batch size used and a smaller one
5     an internal error of collapsecheck (:class:`InternalError`): a bug to report
====  ==========================================================================

Every message is one line that says what is wrong and how to fix it. The library raises these and never
exits; the CLI maps them (and any other exception, as an internal error) to the codes in one place.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional

EXIT_PASS = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_LOAD = 3
EXIT_OUT_OF_MEMORY = 4
EXIT_INTERNAL = 5

#: where an internal error (exit 5) should be reported
REPORT_TO = ("this is a bug in collapsecheck: please report it on the collapsecheck issue tracker with the "
             "command line, `collapsecheck --version` and this traceback")


class CollapsecheckError(Exception):
    """Base class: a one-line, user-facing problem with an exit code."""

    exit_code = EXIT_USAGE


class UsageError(CollapsecheckError):
    """The command line, a config file or an input file is wrong (exit 2)."""

    exit_code = EXIT_USAGE


class LoadError(CollapsecheckError):
    """The checkpoint cannot be loaded or evaluated (exit 3)."""

    exit_code = EXIT_LOAD


class ModelError(LoadError):
    """The model's own code (its forward, its latent decoder) raised while it was evaluated (exit 3).

    ``stage`` says when (``"sampling"``, ``"decoding the samples"``, ...); ``part`` which code raised
    (``"forward"`` or ``"decoder"``); the original exception is the ``__cause__``."""

    def __init__(self, message: str, part: str = "forward", stage: Optional[str] = None):
        super().__init__(message)
        self.part, self.stage = part, stage


class OutOfMemory(CollapsecheckError):
    """The device (or the host) ran out of memory (exit 4). ``batch_size``: the batch size in use, if known."""

    exit_code = EXIT_OUT_OF_MEMORY

    def __init__(self, message: str, batch_size: Optional[int] = None):
        super().__init__(message)
        self.batch_size = batch_size


class InternalError(CollapsecheckError):
    """An unexpected exception in collapsecheck's own code (exit 5): a bug, reported with its traceback."""

    exit_code = EXIT_INTERNAL


def is_out_of_memory(exc: BaseException) -> bool:
    """Is ``exc`` an out-of-memory error? ``torch.cuda.OutOfMemoryError`` (any class named OutOfMemoryError),
    a ``MemoryError``, or a RuntimeError whose message says "out of memory" (CUDA, MPS, the CPU allocator)."""
    if isinstance(exc, OutOfMemory):
        return True
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__) or isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def out_of_memory(exc: BaseException, batch_size: Optional[int], what: str = "") -> OutOfMemory:
    """The one-line :class:`OutOfMemory` for ``exc``: what ran out, the batch size used and a smaller one."""
    where = f" while {what}" if what else ""
    if batch_size:
        advice = (f" with --batch-size {batch_size}: try --batch-size {max(1, batch_size // 2)}"
                  + (" (or --dtype float16 on a GPU)" if batch_size == 1 else ""))
    else:
        advice = ": try a smaller --batch-size, fewer --seeds or --dtype float16 on a GPU"
    return OutOfMemory(f"out of memory{where}{advice} ({first_line(exc, 160)})", batch_size)


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
