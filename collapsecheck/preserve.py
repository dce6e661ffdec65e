"""The caller's world, saved before an in-memory scan and put back after it: :func:`caller_state`.

A scan of a model a training loop holds (:func:`collapsecheck.scan_model`) switches the networks to eval mode,
turns their gradients off, may move them to another device or to float32, and runs code that can touch the
global random states, the environment and the logging levels. :func:`caller_state` records all of it and
restores it on the way out, exceptions included:

* per module: every submodule's ``training`` flag; per parameter ``requires_grad``, device and dtype (and its
  ``.grad``'s); per buffer device and dtype. Tensors are moved back, never copied aside, so a round trip must
  be exact: a move between devices or an upcast is; the caller never downcasts a module it passes here;
* torch's CPU random state (and every CUDA device's when CUDA was initialised), numpy's and ``random``'s;
* ``os.environ``; the level, ``disabled`` and ``propagate`` of every logger; the ``warnings`` filters;
  diffusers' and transformers' progress-bar switches; torch's grad mode and thread count.
"""
from __future__ import annotations

import logging
import os
import random
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import torch


@dataclass
class ModuleState:
    """What a scan may change in one module, to set back exactly."""

    module: torch.nn.Module
    training: list  # (submodule, flag)
    params: list  # (parameter, requires_grad, device, dtype, grad device, grad dtype)
    buffers: list  # (buffer, device, dtype)

    @classmethod
    def of(cls, module: torch.nn.Module) -> "ModuleState":
        params = [(p, p.requires_grad, p.device, p.dtype,
                   None if p.grad is None else p.grad.device, None if p.grad is None else p.grad.dtype)
                  for p in module.parameters()]
        return cls(module, [(m, m.training) for m in module.modules()], params,
                   [(b, b.device, b.dtype) for b in module.buffers()])

    def restore(self) -> None:
        for m, flag in self.training:
            m.training = flag
        with torch.no_grad():
            for p, grad, device, dtype, gdev, gdtype in self.params:
                if p.device != device or p.dtype != dtype:
                    p.data = p.data.to(device=device, dtype=dtype)
                if p.grad is not None and gdev is not None and (p.grad.device != gdev or p.grad.dtype != gdtype):
                    p.grad.data = p.grad.data.to(device=gdev, dtype=gdtype)
                if p.requires_grad != grad:
                    p.requires_grad_(grad)
            for b, device, dtype in self.buffers:
                if b.device != device or b.dtype != dtype:
                    b.data = b.data.to(device=device, dtype=dtype)


@dataclass
class RandomState:
    torch_cpu: torch.Tensor
    torch_cuda: Optional[list]
    numpy: Any
    python: Any

    @classmethod
    def now(cls) -> "RandomState":
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(torch.get_rng_state(), cuda, np.random.get_state(), random.getstate())

    def restore(self) -> None:
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda is not None:
            torch.cuda.set_rng_state_all(self.torch_cuda)
        np.random.set_state(self.numpy)
        random.setstate(self.python)


def _loggers() -> dict:
    found = {"": logging.getLogger()}
    found.update({name: lg for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)})
    return {name: (lg, lg.level, lg.disabled, lg.propagate) for name, lg in found.items()}


def _progress_bars() -> dict:
    """diffusers' and transformers' progress-bar switches, for the libraries already imported."""
    bars = {}
    for lib in ("diffusers", "transformers"):
        if lib in sys.modules:
            log = getattr(sys.modules[lib], "utils", None)
            log = getattr(log, "logging", None)
            if log is not None and hasattr(log, "is_progress_bar_enabled"):
                bars[lib] = (log, log.is_progress_bar_enabled())
    return bars


@dataclass
class ProcessState:
    """The process-wide settings a scan may touch."""

    environ: dict
    loggers: dict
    filters: list
    bars: dict
    grad: bool
    threads: int

    @classmethod
    def now(cls) -> "ProcessState":
        return cls(dict(os.environ), _loggers(), list(warnings.filters), _progress_bars(), torch.is_grad_enabled(),
                   torch.get_num_threads())

    def restore(self) -> None:
        for key in [k for k in os.environ if k not in self.environ]:
            del os.environ[key]
        for key, value in self.environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        for name, (lg, level, disabled, propagate) in self.loggers.items():
            lg.setLevel(level)
            lg.disabled, lg.propagate = disabled, propagate
        if warnings.filters != self.filters:
            warnings.filters[:] = self.filters
            getattr(warnings, "_filters_mutated", lambda: None)()  # drop the cached "already warned" decisions
        for lib, (log, enabled) in self.bars.items():
            (log.enable_progress_bar if enabled else log.disable_progress_bar)()
        torch.set_grad_enabled(self.grad)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)


@contextmanager
def caller_state(modules: Iterable[Optional[torch.nn.Module]] = ()) -> Iterator[None]:
    """Run a block, then put ``modules``, the random states and the process settings back as they were."""
    saved = [ModuleState.of(m) for m in _unique(modules)]
    rng, process = RandomState.now(), ProcessState.now()
    try:
        yield
    finally:
        for state in saved:
            state.restore()
        rng.restore()
        process.restore()


def _unique(modules: Iterable[Optional[torch.nn.Module]]) -> list:
    out: list = []
    for m in modules:
        if isinstance(m, torch.nn.Module) and not any(m is o for o in out):
            out.append(m)
    return out
