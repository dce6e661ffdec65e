"""collapsecheck: catch conditional diffusion models that have collapsed into deterministic decoders.

Library use::

    from collapsecheck import make_config, scan
    result = scan(make_config(checkpoint="ckpt/", seeds=16))
    print(result.verdict, result.guidance.verdict)

A network a training loop holds is scanned in memory, its state left as it was::

    from collapsecheck import scan_model
    result = scan_model(unet, noise_scheduler, classes=range(10), mode="fast")

and :class:`collapsecheck.monitor.CollapseMonitor` runs that scan every N training steps and logs it.

A scan JSON written by ``scan --json`` reads back with ``load_result(path)`` (a :class:`ScanResult`).
"""
from .version import __version__  # noqa: E402

from .config import ScanConfig, make_config  # noqa: E402
from .errors import CollapsecheckError, InternalError, LoadError, ModelError, OutOfMemory, UsageError  # noqa: E402
from .result import ScanResult, load_result  # noqa: E402
from .thresholds import Thresholds  # noqa: E402


def scan(config, progress=None):
    """Run a scan (see :func:`collapsecheck.run.scan`); imported lazily to keep ``--help`` fast. A UsageError names
    the :func:`make_config` keyword at fault (``make_config(classes=...): ...``), not the command-line flag."""
    from .config import with_python_names
    from .run import scan as _scan

    return with_python_names("make_config", _scan, config, progress)


def scan_model(model, scheduler=None, **kwargs):
    """Scan a network held in memory (see :func:`collapsecheck.inmemory.scan_model`); imported lazily."""
    from .inmemory import scan_model as _scan_model

    return _scan_model(model, scheduler, **kwargs)


def __getattr__(name):
    """``collapsecheck.CollapseMonitor``, imported on first use."""
    if name == "CollapseMonitor":
        from .monitor import CollapseMonitor

        return CollapseMonitor
    raise AttributeError(f"module 'collapsecheck' has no attribute {name!r}")


__all__ = ["scan", "scan_model", "CollapseMonitor", "ScanConfig", "make_config", "Thresholds", "ScanResult", "load_result", "CollapsecheckError", "UsageError", "LoadError", "ModelError", "OutOfMemory", "InternalError", "__version__"]
