"""``--profile``: where a scan's time goes, stage by stage.

A stage is a ``with stage("name"):`` block anywhere in the scan's code (load, sampling, eps statistics,
null-branch probe, decoding, LPIPS, ...). Outside :func:`profiling` it does nothing but enter and leave
a generator, so stages stay in the code of every scan at no measurable cost. Inside, each stage's own wall
time is added up (a stage inside another is counted apart and taken out of the outer one's time, so the
stages never add up to more than the whole), with the network evaluations the block reports
(``record.nfe += n``). A new stage is one more ``with stage(...)`` line; the profile lists stages in the
order they first ran.

Clocks are ``time.perf_counter``; on a CUDA device the device is synchronised before each reading, so
the GPU work a stage queued is counted in that stage (which costs a little throughput: only when asked).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator, Optional

from .result import StageTime, TimeProfile


@dataclass
class StageRecord:
    """What a stage block may report: the network evaluations it ran."""

    nfe: int = 0


class Profiler:
    """Stage times of one scan: own seconds and NFE per stage name, in first-run order."""

    def __init__(self, device=None):
        self.device = device  # a torch.device to synchronise before clock readings (CUDA), or None
        self.seconds: dict[str, float] = {}
        self.nfe: dict[str, int] = {}
        self._inner: list[float] = []  # per open stage: the time of the stages inside it so far
        self.started = self.now()

    @property
    def synchronized(self) -> bool:
        return self.device is not None and getattr(self.device, "type", None) == "cuda"

    def now(self) -> float:
        if self.synchronized:
            import torch

            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        record = StageRecord()
        self.seconds.setdefault(name, 0.0)
        self.nfe.setdefault(name, 0)
        self._inner.append(0.0)
        start = self.now()
        try:
            yield record
        finally:
            elapsed = self.now() - start
            inner = self._inner.pop()
            self.seconds[name] += max(0.0, elapsed - inner)
            self.nfe[name] += int(record.nfe)
            if self._inner:
                self._inner[-1] += elapsed

    def result(self, total_seconds: Optional[float] = None) -> TimeProfile:
        """The profile so far; ``total_seconds`` defaults to the time since the profiler was made."""
        total = self.now() - self.started if total_seconds is None else float(total_seconds)
        stages = [StageTime(name, round(self.seconds[name], 6), self.nfe[name]) for name in self.seconds]
        spent = sum(s.seconds for s in stages)
        total = max(total, spent)
        return TimeProfile(stages=stages, total_seconds=round(total, 6), other_seconds=round(total - spent, 6),
                           synchronized=self.synchronized)


_ACTIVE: ContextVar[Optional[Profiler]] = ContextVar("collapsecheck_profiler", default=None)


@contextmanager
def profiling(profiler: Optional[Profiler]) -> Iterator[Optional[Profiler]]:
    """Stages run inside this block are recorded by ``profiler`` (None: not recorded)."""
    token = _ACTIVE.set(profiler)
    try:
        yield profiler
    finally:
        _ACTIVE.reset(token)


def active() -> Optional[Profiler]:
    """The profiler recording now, or None."""
    return _ACTIVE.get()


@contextmanager
def stage(name: str) -> Iterator[StageRecord]:
    """Time the block as stage ``name`` when a profiler records (see :func:`profiling`); else do nothing.
    Report the block's network evaluations with ``record.nfe += n``."""
    profiler = _ACTIVE.get()
    if profiler is None:
        yield StageRecord()
        return
    with profiler.stage(name) as record:
        yield record
