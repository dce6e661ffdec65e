"""Commands under ``torchrun`` or ``accelerate launch``: the process group for the command's body,
rank 0's exit code on every rank.

Every rank runs the command; rank 0 alone writes outputs and prints; the others end with the exit
code rank 0 broadcasts. One process (no launcher, ``WORLD_SIZE`` 1) makes no process group.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

from ..distributed import World, barrier, broadcast, device_for, process_group, world_from_env

__all__ = ["World", "world_from_env", "ranks", "finish"]


@contextlib.contextmanager
def ranks(world: World, device: str) -> Iterator[None]:
    """The process group (when several processes run) for the block."""
    with process_group(world, device_for(world, device)):
        yield


def finish(world: World, code_of_root: Callable[[], int]) -> None:
    """Exit with rank 0's code: rank 0 computes it (``code_of_root()``: write outputs, gate) and
    sends it; the other ranks wait for it."""
    code = int(broadcast(code_of_root() if world.root else None, world))
    barrier(world)  # every rank holds the code before any leaves and tears the group down: gloo aborts otherwise
    sys.exit(code)
