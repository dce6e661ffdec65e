"""The main grid sampled in units of conditions: each unit saved as it finishes (``--resume``) and
dealt to one of several processes (``torchrun``), the whole gathered on rank 0.

A unit is a block of consecutive conditions sized to fill one batch (``--batch-size`` network
inputs, a conditional and a null one per cell), so its size depends on the batch size, the
guidance scales and the seeds, never on the number of processes or on what was saved before:
a resumed scan and a scan spread over processes sample exactly the batches one uninterrupted
process samples, and give the same numbers. A scan whose grid fits one batch is one unit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import torch

from .distributed import SINGLE, World, gather, shard
from .load.conditions import ConditionSet
from .model.denoiser import Denoiser
from .model.schedule import Schedule
from .sample.grid import GridSamples, sample_grid
from .state import ScanState

Progress = Optional[Callable[[int], None]]


def unit_size(batch_size: int, cells_per_condition: int) -> int:
    """Conditions per unit: as many as fill a chunk of ``batch_size // 2`` cells, at least one."""
    return max(1, (batch_size // 2) // max(1, cells_per_condition))


def unit_blocks(conditions: int, size: int) -> list[tuple[int, int]]:
    """The units as ``(first, stop)`` condition ranges, in condition order."""
    return [(a, min(conditions, a + size)) for a in range(0, conditions, size)]


def subset(conds: ConditionSet, first: int, stop: int) -> ConditionSet:
    """Conditions ``first..stop-1`` of ``conds`` with the same null (their own nulls, when each has one)."""
    null = conds.null[first:stop] if conds.paired_null else conds.null
    return replace(conds, values=conds.values[first:stop], labels=conds.labels[first:stop], null=null, complete=False)


@dataclass
class GridJob:
    """What sampling the main grid needs."""

    denoiser: Denoiser
    schedule: Schedule
    conds: ConditionSet
    seeds: Sequence[int]
    scales: Sequence[float]
    steps: int
    batch_size: int  # --batch-size: sets the units, the same on every process and after a resume
    chunk: Optional[int] = None  # the batch the units are sampled in (smaller after an out-of-memory error)

    def blocks(self) -> list[tuple[int, int]]:
        size = unit_size(self.batch_size, len(self.scales) * len(self.seeds))
        return unit_blocks(len(self.conds), size)


def unit_name(first: int, stop: int) -> str:
    return f"unit-{first:06d}-{stop:06d}"


def sample_unit(job: GridJob, first: int, stop: int, state: Optional[ScanState], progress: Progress,
                on_host: bool = True) -> dict:
    """One unit's final samples and eps statistics, from the state when saved there: CPU tensors when
    ``on_host`` (saved, or sent to another process), else where they were sampled (no device-host copy)."""
    name = unit_name(first, stop)
    saved = state.load_tensors(name) if state is not None else None
    if saved is not None:
        tensors, meta = saved
        if progress is not None:
            progress(job.steps)
        return {**tensors, "timesteps": tensors["timesteps"], "nfe": int(meta["nfe"])}
    grid = sample_grid(job.denoiser, job.schedule, subset(job.conds, first, stop), job.seeds, list(job.scales),
                       job.steps, job.chunk or job.batch_size, progress)
    tensors = {"samples": grid.samples, "eps_ratio": grid.eps_ratio, "eps_cos": grid.eps_cos,
               "timesteps": grid.timesteps.cpu()}
    if on_host or state is not None:
        tensors = {key: value.cpu() for key, value in tensors.items()}
    if state is not None:
        state.save_tensors(name, tensors, {"nfe": grid.nfe, "conditions": [first, stop]})
    return {**tensors, "nfe": grid.nfe}


def sample_units(job: GridJob, world: World = SINGLE, state: Optional[ScanState] = None,
                 progress_factory=None, while_waiting: Callable[[], object] = lambda: None):
    """The main grid: this rank's units sampled (or read back from ``state``), every rank's gathered.

    Returns ``(grid, waited)`` on rank 0, where ``waited`` is what ``while_waiting()`` returned (rank 0
    runs it after its own units, before gathering the others'), and None on the other ranks.
    """
    blocks = job.blocks()
    mine = shard(len(blocks), world)
    advance = progress_factory("sampling", job.steps * len(mine)) if progress_factory else None
    done = {i: sample_unit(job, *blocks[i], state, advance, on_host=world.distributed) for i in mine}
    waited = while_waiting() if world.root else None
    parts = gather(done, world)
    if not world.root:
        return None
    units = {i: u for part in parts for i, u in part.items()}
    return join(job, [units[i] for i in range(len(blocks))]), waited


def join(job: GridJob, units: list[dict]) -> GridSamples:
    """The units in condition order as one grid, on the sampling device."""
    device = job.denoiser.device
    return GridSamples(
        variants=tuple(sample_grid_variants(job.scales)),
        samples=torch.cat([u["samples"] for u in units], dim=1).to(device),
        eps_ratio=torch.cat([u["eps_ratio"] for u in units], dim=2).to(device),
        eps_cos=torch.cat([u["eps_cos"] for u in units], dim=2).to(device),
        timesteps=units[0]["timesteps"],
        nfe=sum(int(u["nfe"]) for u in units),
    )


def sample_grid_variants(scales: Sequence[float]):
    from .sample.variants import as_variants

    return as_variants(list(scales))
