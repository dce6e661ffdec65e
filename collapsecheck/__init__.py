"""collapsecheck: catch conditional diffusion models that have collapsed into deterministic decoders.

Library use::

    from collapsecheck import make_config, scan
    result = scan(make_config(checkpoint="ckpt/", seeds=16))
    print(result.verdict, result.guidance.verdict)

A scan JSON written by ``scan --json`` reads back with ``load_result(path)`` (a :class:`ScanResult`).
"""
__version__ = "0.1.0"

from .config import ScanConfig, make_config  # noqa: E402
from .errors import CollapsecheckError, LoadError, UsageError  # noqa: E402
from .result import ScanResult, load_result  # noqa: E402
from .thresholds import Thresholds  # noqa: E402


def scan(config, progress=None):
    """Run a scan (see :func:`collapsecheck.run.scan`); imported lazily to keep ``--help`` fast."""
    from .run import scan as _scan

    return _scan(config, progress)


__all__ = ["scan", "ScanConfig", "make_config", "Thresholds", "ScanResult", "load_result", "CollapsecheckError", "UsageError", "LoadError", "__version__"]
