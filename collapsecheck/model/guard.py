"""The model's own code, fenced: whatever a network or a latent decoder raises while a scan evaluates it
becomes one typed error, and an out-of-memory error names the batch size.

* :class:`Guarded` wraps a denoiser: an exception from its forward (``denoiser(x_t, t, cond)``) or its
  decoder (``decode_grid``) becomes a :class:`~collapsecheck.errors.ModelError` (exit 3), whatever its
  type, so that a model that raises is never mistaken for a bug of collapsecheck (exit 5);
* :func:`evaluating` names the stage (``"sampling"``, ``"decoding the samples"``, ...) in that error, and
  turns an out-of-memory error into :class:`~collapsecheck.errors.OutOfMemory` (exit 4);
* :func:`memory_guard` does the latter alone, for stages that run collapsecheck's own code (measures);
* :func:`halving` runs a stage at a batch size and, on out-of-memory, again at half of it, down to 1: a
  scan's numbers never depend on the batch size, so the retry gives what the first try would have.

Never prints; the original exception is the ``__cause__``.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, TypeVar

from ..errors import (CollapsecheckError, LoadError, ModelError, OutOfMemory, first_line, is_out_of_memory,
                      out_of_memory)

T = TypeVar("T")

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


def halving(stage: str, batch_size: int, run: Callable[[int], T]) -> tuple[T, int]:
    """``run(batch)`` inside :func:`evaluating`, first at ``batch_size``; after an out-of-memory error the
    memory is freed and it runs again at half the batch, down to 1, where the OutOfMemory (exit 4) is
    raised. Returns ``run``'s value and the batch size that fit."""
    start = batch = max(1, int(batch_size))
    while True:
        try:
            with evaluating(stage, batch):
                return run(batch), batch
        except OutOfMemory as exc:
            if batch <= 1:
                raise (exc if start == 1 else out_of_memory_at_one(exc, stage, start)) from exc.__cause__
        batch //= 2
        free_device_memory()


def out_of_memory_at_one(exc: OutOfMemory, stage: str, start: int) -> OutOfMemory:
    """The OutOfMemory when even a batch of 1 did not fit, after halving from ``start``."""
    cause = first_line(exc.__cause__, 160) if exc.__cause__ is not None else str(exc)
    return OutOfMemory(f"out of memory while {stage} even at batch size 1 (halved from --batch-size {start}): "
                       f"try fewer --seeds, a smaller model or --dtype float16 on a GPU ({cause})", 1)


def free_device_memory() -> None:
    """Drop the failed try's tensors and return the allocator's cached blocks (CUDA, MPS) to the device."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mps.empty_cache()
