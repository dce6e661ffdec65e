"""Flush denormal floats to zero on the CPU while a scan's networks run; the caller's setting comes back after.

Trained networks produce denormal activations (SiLU and softmax of very negative inputs, tiny
residuals), and x86 CPUs handle each denormal operand in microcode, tens of times slower than a normal
float: on the 8x8 example models half to two thirds of a CPU scan's sampling time went there.
Flushing them to zero changes results only by values below 1.2e-38 (float noise).

``torch.set_flush_denormal`` sets the calling thread's floating-point mode only (intra-op worker
threads that already exist keep theirs), and torch offers no way to read it back, so
:func:`flush_denormals` reads it with a probe and restores it on exit.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

#: a float32 denormal (2^-130); multiplying it by one gives zero exactly when denormals are flushed
_DENORMAL = 2.0 ** -130


def flushing_denormals() -> bool:
    """Does this thread flush denormal floats to zero on the CPU now?"""
    return bool(torch.tensor([_DENORMAL], dtype=torch.float32).mul(1.0)[0] == 0)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormals to zero on this thread inside the block (where the CPU supports it), then restore."""
    if flushing_denormals() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
