"""Several processes on one scan (``torchrun``, ``accelerate launch``): who does which unit of work.

The launcher sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`world_from_env` reads them. The
units of a scan (blocks of conditions, or the checkpoints of a trend) are dealt round-robin by
:func:`shard`, a partition that depends only on the unit count and the world size. Rank 0 gathers
the others' work, measures, decides and writes; the others write nothing. The process group is made
(gloo on CPU, nccl on CUDA) only when ``WORLD_SIZE > 1``, by :func:`process_group`, which the command
line enters; the library never makes one.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from .errors import UsageError

#: how long a rank waits for the others (rank 0 measures and runs the recovery probes alone meanwhile)
TIMEOUT = _dt.timedelta(hours=12)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def root(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def world_from_env(env: Optional[Mapping[str, str]] = None) -> World:
    """The process's place among the launcher's processes; one process without a launcher."""
    env = os.environ if env is None else env
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun or accelerate launch)") from None
    if size < 1 or not 0 <= rank < size:
        raise UsageError(f"RANK {rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE {size})")
    return World(rank, size, local)


def shard(count: int, world: World) -> list[int]:
    """The units (of ``range(count)``) this rank runs: every ``world.size``-th from ``world.rank``.
    Over all ranks a partition of the units, in their order, stable for a given count and size."""
    return list(range(world.rank, count, world.size))


def resolve_device(name: str) -> torch.device:
    """The torch device ``--device`` names (auto: cuda when available, else cpu; mps only when asked for).
    A device this machine lacks is a one-line usage error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is available; use --device cpu")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"--device {name}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                             f"(cuda:0 to cuda:{count - 1})")
    if name == "mps" and not _mps_available():
        raise UsageError("--device mps: no MPS device is available (Apple silicon with a torch built for it); "
                         "use --device cpu")
    return torch.device(name)


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def device_for(world: World, device: str) -> str:
    """A plain ``cuda`` means this process's own GPU (``cuda:LOCAL_RANK``) when several processes run."""
    if world.distributed and device in ("cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{world.local_rank % torch.cuda.device_count()}"
    return device


@contextlib.contextmanager
def process_group(world: World, device: str = "cpu") -> Iterator[None]:
    """The default process group for the block (gloo on CPU, nccl on CUDA), destroyed after it;
    nothing when one process runs or a group exists already (made by the caller)."""
    import torch.distributed as dist

    if not world.distributed or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        import torch

        torch.cuda.set_device(int(device.split(":")[1]) if ":" in device else world.local_rank)
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def gather(value: Any, world: World) -> Optional[list]:
    """Every rank's ``value`` in rank order on rank 0 (None on the others); ``[value]`` alone.
    Values travel between this job's own processes (CPU tensors, plain data)."""
    if not world.distributed:
        return [value]
    import torch.distributed as dist

    out = [None] * world.size if world.root else None
    dist.gather_object(value, out, dst=0)
    return out


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not world.distributed:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    """Wait until every rank gets here (nothing when one process runs)."""
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()
