"""The model's own code, fenced: whatever a network or a latent decoder raises while a scan evaluates it
becomes one typed error, and an out-of-memory error names the batch size.

* :class:`Guarded` wraps a denoiser: an exception from its forward (``denoiser(x_t, t, cond)``) or its
  decoder (``decode_grid``) becomes a :class:`~collapsecheck.errors.ModelError` (exit 3), whatever its
  type, so that a model that raises is never mistaken for a bug of collapsecheck (exit 5);
* :func:`evaluating` names the stage (``"sampling"``, ``"decoding the samples"``, ...) in that error, and
  turns an out-of-memory error into :class:`~collapsecheck.errors.OutOfMemory` (exit 4);
* :func:`memory_guard` does the latter alone, for stages that run collapsecheck's own code (measures).

Never prints; the original exception is the ``__cause__``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

from ..errors import CollapsecheckError, LoadError, ModelError, first_line, is_out_of_memory, out_of_memory

#: exceptions of the sampling code itself that mean "this model cannot be evaluated with these inputs"
#: (shapes, dtypes, indices): reported as a LoadError, as before the guard existed
EVALUATION_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)
#: what each fenced part is called in a message
PARTS = {"forward": "the model", "decoder": "the latent decoder"}


def model_failure(part: str, exc: BaseException, stage: Optional[str] = None) -> ModelError:
    """The ModelError for ``exc`` raised by the model's ``part`` (``forward`` or ``decoder``)."""
    when = f" while {stage}" if stage else ""
    return ModelError(f"{PARTS[part]} failed{when}: {type(exc).__name__}: {first_line(exc)}", part=part, stage=stage)


class Guarded:
    """A denoiser whose forward and decoder raise only collapsecheck's errors (see the module docstring).

    Every other attribute is the wrapped denoiser's."""

    def __init__(self, inner: Any):
        self._inner = inner

    def __call__(self, *args, **kwargs):
        return self._fenced("forward", self._inner, *args, **kwargs)

    def decode_grid(self, samples, batch_size: int):
        return self._fenced("decoder", self._inner.decode_grid, samples, batch_size)

    @staticmethod
    def _fenced(part: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CollapsecheckError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                raise  # :func:`evaluating` knows the stage and the batch size
            raise model_failure(part, exc) from exc

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def guarded(denoiser: Any) -> Guarded:
    """``denoiser`` fenced by a :class:`Guarded` (once)."""
    return denoiser if isinstance(denoiser, Guarded) else Guarded(denoiser)


@contextmanager
def memory_guard(stage: str, batch_size: Optional[int]) -> Iterator[None]:
    """An out-of-memory error in the block becomes one OutOfMemory line naming ``stage`` and ``batch_size``."""
    try:
        yield
    except CollapsecheckError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(exc, batch_size, stage) from exc
        raise


@contextmanager
def evaluating(stage: str, batch_size: Optional[int] = None) -> Iterator[None]:
    """A failure while the model is evaluated in ``stage`` becomes one line: OutOfMemory, or a LoadError
    (a :class:`ModelError` when the model's own code raised) that names the stage."""
    try:
        with memory_guard(stage, batch_size):
            yield
    except ModelError as exc:
        if exc.stage is not None:
            raise
        raise model_failure(exc.part, exc.__cause__ or exc, stage) from exc.__cause__
    except CollapsecheckError:
        raise
    except EVALUATION_ERRORS as exc:
        raise LoadError(f"the model failed while {stage}: {first_line(exc)}") from exc
