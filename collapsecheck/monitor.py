"""A training monitor: :class:`CollapseMonitor` scans the model a training loop holds every ``every`` steps.

Called from a diffusers-style or accelerate loop with the current model::

    monitor = CollapseMonitor(every=500, classes=range(10), seeds=8, mode="fast", early_stop=True)
    for step in ...:
        ...  # a training step
        monitor.step(global_step, unet, noise_scheduler, accelerator=accelerator)
        if monitor.should_stop:
            break

Every ``every`` steps it runs :func:`collapsecheck.scan_model` (fast mode by default; the model's state is left as
it was) and logs per-condition seed diversity (seed share, pixel RMS), the null branch (hull residual, verdict),
the eps ratio, the collapse and guidance verdicts, the scan's cost and a contact sheet: through
``accelerator.log`` and its trackers' ``log_images`` (TensorBoard, Weights & Biases, ...) when an accelerator is
given, else with ``torch.utils.tensorboard``'s ``SummaryWriter`` into ``log_dir``. The first step whose verdict
reaches ``onset`` (``at_risk`` by default) is the collapse onset: a :class:`Onset` record, a warning on the
``collapsecheck.monitor`` logger and the ``on_onset`` callback; with ``early_stop``, :attr:`should_stop` turns
true there. Its cost: the scan's seconds over the training seconds since the previous scan, logged as
``cost_fraction``; over ``budget``, a warning says how to lower it. accelerate and tensorboard are imported
lazily (``pip install 'collapsecheck[monitor]'``). Never prints.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .errors import UsageError
from .result import ScanResult

LOG = logging.getLogger("collapsecheck.monitor")
COLLAPSE_LEVELS = {"healthy": 0, "at_risk": 1, "collapsed": 2}
GUIDANCE_LEVELS = {"steerable": 0, "weak": 1, "not_steerable": 2}
NULL_LEVELS = {"learned": 0, "unclear": 1, "not_learned": 2, "absent_by_design": -1}


@dataclass(frozen=True)
class Onset:
    """The first monitored step whose collapse verdict reached the monitor's ``onset`` level."""

    step: int
    verdict: str
    previous_step: Optional[int]  # the last monitored step before it (below the onset level), if any
    message: str


@dataclass
class MonitorRecord:
    """What one monitored step measured (``result``: the full :class:`ScanResult`)."""

    step: int
    verdict: str
    guidance: str
    null_branch: str
    scalars: Dict[str, float]
    scan_seconds: float
    train_seconds: Optional[float]
    cost_fraction: Optional[float]
    result: ScanResult = field(repr=False)


def scalars_of(result: ScanResult) -> Dict[str, float]:
    """The numbers the monitor logs for one scan, by tag (without the prefix)."""
    conds = result.conditions
    null = result.guidance.null_branch
    out = {
        "verdict_level": float(COLLAPSE_LEVELS[result.verdict]),
        "guidance_level": float(GUIDANCE_LEVELS[result.guidance.verdict]),
        "null_branch_level": float(NULL_LEVELS.get(null.verdict, -1)),
        "eps_ratio": sum(c.eps_ratio for c in conds) / len(conds),
        "pixel_rms": sum(c.pixel_rms for c in conds) / len(conds),
        "collapsed_conditions": float(sum(c.verdict == "collapsed" for c in conds)),
    }
    if null.residual is not None:
        out["null_residual"] = float(null.residual)
    if null.null_ratio is not None:
        out["null_ratio"] = float(null.null_ratio)
    shares = [c.seed_share for c in conds if c.seed_share is not None]
    if shares:
        out["seed_share"] = sum(shares) / len(shares)
    for i, c in enumerate(conds):
        name = f"{i:02d}_{tag_safe(c.label)}"
        out[f"pixel_rms/{name}"] = float(c.pixel_rms)
        if c.seed_share is not None:
            out[f"seed_share/{name}"] = float(c.seed_share)
    return out


def tag_safe(label: str, limit: int = 40) -> str:
    """A condition label as a tracker tag: letters, digits, ``_.-``; at most ``limit`` characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")[:limit] or "cond"


class CollapseMonitor:
    """Scan the training model every ``every`` steps; log, report the collapse onset, optionally stop.

    Args:
        every: scan when ``step % every == 0`` (step 0 included: the baseline), once per step value (calls
            repeated with the same ``global_step`` under gradient accumulation scan once).
        classes, prompts, negative_prompt, cond, null: the conditions, as :func:`collapsecheck.scan_model` takes
            them (prompts need a ``DiffusionPipeline`` as the model, or the loop's ``text_encoder`` and
            ``tokenizer`` passed to :meth:`step`).
        seeds, mode: the scan's seeds and mode (``"fast"``: a tenth of a full scan's network evaluations).
        early_stop: ``True`` (stop at ``collapsed``), a verdict (``"at_risk"``), or ``False``.
        onset: the verdict that counts as the collapse onset (``"at_risk"`` or ``"collapsed"``).
        log_dir: a TensorBoard folder, used when no accelerator is given to :meth:`step`.
        on_onset: called with the :class:`Onset` once, when it happens.
        budget: the largest cost (scan time / training time between scans) before a warning, e.g. 0.05.
        prefix: the tag prefix of every logged value.
        images: log the contact sheet.
        settings: any other :func:`collapsecheck.scan_model` setting (``steps``, ``lpips``, ``device``, ...).
    """

    def __init__(self, every: int = 500, *, classes: Any = None, prompts: Union[None, str, Sequence[str]] = None,
                 negative_prompt: Optional[str] = None, cond: Any = None, null: Any = None, seeds: int = 8,
                 mode: str = "fast", early_stop: Union[bool, str] = False, onset: str = "at_risk",
                 log_dir: Optional[str] = None, on_onset: Optional[Callable[[Onset], None]] = None,
                 budget: Optional[float] = None, prefix: str = "collapsecheck", images: bool = True, **settings: Any):
        self.every, self.stop_level = _check_every(every), _stop_level(early_stop)
        self.onset_level = _level("onset", onset)
        self.conditions = dict(classes=classes, prompts=prompts, negative_prompt=negative_prompt, cond=cond, null=null)
        self.settings = dict(seeds=seeds, mode=mode, **settings)
        self.log_dir, self.on_onset, self.budget = log_dir, on_onset, budget
        self.prefix, self.images = prefix.rstrip("/"), images
        self.history: List[MonitorRecord] = []
        self.onset: Optional[Onset] = None
        self.should_stop = False
        self._writer = None
        self._since: Optional[float] = None  # when training resumed after the last scan (or the first call)

    def __call__(self, step: int, model: Any, scheduler: Any = None, *, accelerator: Any = None, vae: Any = None,
                 text_encoder: Any = None, tokenizer: Any = None) -> Optional[MonitorRecord]:
        """Scan at monitored steps (None at the others, and on processes other than accelerate's main one).
        ``vae``, ``text_encoder`` and ``tokenizer``: the loop's own, as :func:`collapsecheck.scan_model` takes them."""
        now = time.perf_counter()
        if self._since is None:
            self._since = now
        if step % self.every != 0 or (accelerator is not None and not accelerator.is_main_process):
            return None
        if self.history and self.history[-1].step == step:  # gradient accumulation: one scan per global step
            return None
        train_seconds = now - self._since if self.history else None
        from .inmemory import scan_model

        result = scan_model(model, scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                            **self._condition_args(), **self.settings)
        scan_seconds = time.perf_counter() - now
        record = self._record(step, result, scan_seconds, train_seconds)
        self._log(record, accelerator)
        self._since = time.perf_counter()
        return record

    step = __call__

    def _condition_args(self) -> dict:
        return {k: v for k, v in self.conditions.items() if v is not None}

    def _record(self, step: int, result: ScanResult, scan_seconds: float,
                train_seconds: Optional[float]) -> MonitorRecord:
        cost = scan_seconds / train_seconds if train_seconds else None
        scalars = {**scalars_of(result), "scan_seconds": scan_seconds}
        if cost is not None:
            scalars.update(train_seconds=train_seconds, cost_fraction=cost)
        record = MonitorRecord(step, result.verdict, result.guidance.verdict, result.guidance.null_branch.verdict,
                               scalars, scan_seconds, train_seconds, cost, result)
        previous = self.history[-1].step if self.history else None
        self.history.append(record)
        self._check_onset(record, previous)
        self._check_budget(record)
        return record

    def _check_onset(self, record: MonitorRecord, previous: Optional[int]) -> None:
        level = COLLAPSE_LEVELS[record.verdict]
        if self.onset is None and level >= self.onset_level:
            since = f" (step {previous} was below)" if previous is not None else " (at the first monitored step)"
            share = record.scalars.get("seed_share")
            numbers = f"seed share {share:.3f}, " if share is not None else ""
            message = (f"collapse onset at step {record.step}: the verdict is {record.verdict}{since}; "
                       f"{numbers}pixel RMS {record.scalars['pixel_rms']:.3f}, guidance {record.guidance}, "
                       f"null branch {record.null_branch}")
            self.onset = Onset(record.step, record.verdict, previous, message)
            LOG.warning(message)
            if self.on_onset is not None:
                self.on_onset(self.onset)
        if self.stop_level is not None and level >= self.stop_level and not self.should_stop:
            self.should_stop = True
            LOG.warning(f"early stop requested at step {record.step}: the verdict is {record.verdict}")

    def _check_budget(self, record: MonitorRecord) -> None:
        if self.budget is not None and record.cost_fraction is not None and record.cost_fraction > self.budget:
            LOG.warning(f"the scan at step {record.step} took {record.scan_seconds:.1f}s, "
                        f"{record.cost_fraction:.1%} of the {record.train_seconds:.1f}s of training since the last "
                        f"one (budget {self.budget:.1%}): raise every= or lower seeds=")

    def _log(self, record: MonitorRecord, accelerator: Any) -> None:
        values = {f"{self.prefix}/{k}": v for k, v in record.scalars.items()}
        if self.onset is not None and self.onset.step == record.step:
            values[f"{self.prefix}/onset_step"] = float(record.step)
        sheet = _sheet(record.result) if self.images else None
        if accelerator is not None:
            _log_accelerate(accelerator, values, sheet, f"{self.prefix}/contact_sheet", record.step)
        elif self.log_dir is not None:
            _log_writer(self._summary_writer(), values, sheet, f"{self.prefix}/contact_sheet", record.step)
            if self.onset is not None and self.onset.step == record.step:
                self._summary_writer().add_text(f"{self.prefix}/onset", self.onset.message, record.step)
            self._summary_writer().flush()

    def _summary_writer(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("CollapseMonitor(log_dir=...) writes TensorBoard files: pip install tensorboard "
                                 "(or 'collapsecheck[monitor]')") from None
            self._writer = SummaryWriter(str(self.log_dir))
        return self._writer

    def close(self) -> None:
        """Close the SummaryWriter the monitor opened (an accelerator's trackers are the caller's to end)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _check_every(every: Any) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UsageError(f"CollapseMonitor(every=...): must be a positive int (training steps), got {every!r}")
    return every


def _level(name: str, verdict: str) -> int:
    if verdict not in ("at_risk", "collapsed"):
        raise UsageError(f"CollapseMonitor({name}=...): must be 'at_risk' or 'collapsed', got {verdict!r}")
    return COLLAPSE_LEVELS[verdict]


def _stop_level(early_stop: Union[bool, str]) -> Optional[int]:
    if early_stop is False or early_stop is None:
        return None
    return _level("early_stop", "collapsed" if early_stop is True else early_stop)


def _sheet(result: ScanResult):
    """The contact sheet as an (H, W, 3) uint8 array."""
    import numpy as np

    from .report.images import contact_sheet

    image, _ = contact_sheet(result)
    return np.asarray(image.convert("RGB"))


def _log_accelerate(accelerator: Any, values: dict, sheet, tag: str, step: int) -> None:
    """Scalars through ``accelerator.log``; the sheet through each tracker's ``log_images``."""
    accelerator.log(values, step=step)
    if sheet is None:
        return
    for tracker in getattr(accelerator, "trackers", []):
        if not hasattr(tracker, "log_images"):
            continue
        try:
            if tracker.name == "tensorboard":
                tracker.log_images({tag: sheet[None]}, step=step, dataformats="NHWC")
            else:
                from PIL import Image

                tracker.log_images({tag: [Image.fromarray(sheet)]}, step=step)
        except Exception as exc:  # a tracker that cannot take images must not end the training run
            LOG.warning(f"the {tracker.name} tracker could not log the contact sheet: {exc}")


def _log_writer(writer: Any, values: dict, sheet, tag: str, step: int) -> None:
    for key, value in values.items():
        writer.add_scalar(key, value, step)
    if sheet is not None:
        writer.add_image(tag, sheet, step, dataformats="HWC")
