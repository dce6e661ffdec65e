"""diffusers' logging, quieted for a block and restored after (its warnings are not the user's business here:
every assumption the loaders make is written into the report's notes instead)."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_diffusers(level: int = logging.ERROR, progress_bars: bool = True) -> Iterator[None]:
    """diffusers' log level set to ``level`` for the block (and its progress bars off unless ``progress_bars``),
    both restored afterwards."""
    from diffusers.utils import logging as diffusers_logging

    saved, bars = diffusers_logging.get_verbosity(), diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity(level)
    if not progress_bars:
        diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(saved)
        if bars and not progress_bars:
            diffusers_logging.enable_progress_bar()
