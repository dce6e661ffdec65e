"""quiet_diffusers restores diffusers' log level and progress bars, also when the block raises."""
import logging

import pytest
from diffusers.utils import logging as diffusers_logging

from collapsecheck.quiet import quiet_diffusers


def test_level_and_progress_bars_are_restored_after_an_error():
    diffusers_logging.set_verbosity(logging.INFO)
    diffusers_logging.enable_progress_bar()
    try:
        with pytest.raises(RuntimeError):
            with quiet_diffusers(progress_bars=False):
                assert diffusers_logging.get_verbosity() == logging.ERROR
                assert not diffusers_logging.is_progress_bar_enabled()
                raise RuntimeError("inside")
        assert diffusers_logging.get_verbosity() == logging.INFO
        assert diffusers_logging.is_progress_bar_enabled()
        with quiet_diffusers(logging.WARNING):
            assert diffusers_logging.get_verbosity() == logging.WARNING
            assert diffusers_logging.is_progress_bar_enabled()
    finally:
        diffusers_logging.set_verbosity(logging.WARNING)
