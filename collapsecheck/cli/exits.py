"""Exceptions to exit codes, in one place (the codes: :mod:`collapsecheck.errors`, README, docs/ci.md).

* a :class:`~collapsecheck.errors.CollapsecheckError`: its one line on stderr and its own code (2, 3, 4);
* an out-of-memory error that escaped the library's guards (moving the model to the device, say): exit 4,
  naming the batch size in use and a smaller one;
* anything else is a bug of collapsecheck: its traceback, where to report it, exit 5. Only this case shows
  a traceback.
"""
from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager
from typing import Iterator, Optional

import click

from ..errors import (
    REPORT_TO,
    CollapsecheckError,
    InternalError,
    first_line,
    is_out_of_memory,
    out_of_memory,
)

#: the exit code of an interrupted command (128 + SIGINT)
EXIT_INTERRUPTED = 130


def as_collapsecheck_error(exc: Exception, batch_size: Optional[int] = None) -> CollapsecheckError:
    """The typed error an exception maps to: itself, an OutOfMemory, or an InternalError."""
    if isinstance(exc, CollapsecheckError):
        return exc
    if is_out_of_memory(exc):
        return out_of_memory(exc, batch_size)
    return InternalError(f"internal error: {type(exc).__name__}: {first_line(exc)}")


@contextmanager
def exit_codes(batch_size: Optional[int] = None) -> Iterator[None]:
    """Run a command's body; turn whatever it raises into one line on stderr and the documented exit code.

    ``batch_size``: the ``--batch-size`` in use, named when the machine runs out of memory."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise  # click's own, already with their exit codes
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one place every exception becomes an exit code
        error = as_collapsecheck_error(exc, batch_size)
        if isinstance(error, InternalError):
            click.echo(traceback.format_exc().rstrip(), err=True)
            click.echo(f"error: {error} ({REPORT_TO})", err=True)
        else:
            click.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
