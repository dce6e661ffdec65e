"""Checkpoint trends (``collapsecheck trend DIR``): scan a training run's checkpoints in step order
with the same seeds, conditions and settings, and say when collapse began.

Checkpoints are diffusers ``checkpoint-N/`` folders or weight files whose names carry a step or
epoch number (``model-step004000.safetensors``, ``epoch_12.safetensors``, ``unet_8000.safetensors``).

Results are cached, because a run's early checkpoints do not change: one JSON file per scan in the
cache folder (default ``DIR/.collapsecheck-cache/``), named by a hash of the checkpoint's content
(the bytes of its weight and config files, hashed before loading) and of the scan settings
(everything in the resolved configuration except the checkpoint path, plus the contents of the
files it names and the collapsecheck version). Entries are written atomically; an unreadable one
is a miss and is rewritten.

Never prints; :func:`run_trend` writes only into the cache folder.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from .version import __version__
from .verdict.gate import apply_gate
from .config import ScanConfig
from .distributed import SINGLE, World, gather, shard
from .errors import UsageError
from .result import SCHEMA_VERSION

CACHE_DIRNAME = ".collapsecheck-cache"
CACHE_FORMAT = 1
TREND_SCHEMA_VERSION = "1.0"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
_KEYWORD = re.compile(r"(?:^|[^a-z])(global_step|steps?|iter(?:ation)?s?|it|epochs?|ep|checkpoint|ckpt)[-_=]?0*(\d+)(?!.*\d)",
                      re.IGNORECASE)
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")
#: training-state files that do not change what a scan sees (optimizer, RNG, LR scheduler, AMP scaler)
_TRAINING_STATE = re.compile(r"^(optimizer.*|random_states.*|scaler\.pt|scheduler\.bin|sampler.*\.bin)$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    unit: str  # "step" or "epoch"


def parse_step(name: str) -> Optional[tuple[int, str]]:
    """(number, unit) from a checkpoint file or folder name, or None when it carries no number."""
    match = _CHECKPOINT_DIR.match(name)
    if match:
        return int(match.group(1)), "step"
    stem = name
    for suffix in WEIGHT_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    match = _KEYWORD.search(stem)
    if match:
        unit = "epoch" if match.group(1).lower().startswith("ep") else "step"
        return int(match.group(2)), unit
    match = _LAST_NUMBER.search(stem)
    if match:
        return int(match.group(1)), "step"
    return None


def find_checkpoints(folder: Union[str, Path]) -> list[Checkpoint]:
    """The checkpoints in ``folder``, in step order. Raises UsageError when there are none or they clash."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: trend scans a folder of checkpoints (checkpoint-N/ or step-numbered weight files)")
    found: dict[int, Checkpoint] = {}
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            match = _CHECKPOINT_DIR.match(child.name)
            if not match:
                continue
            parsed = (int(match.group(1)), "step")
        elif child.suffix.lower() in WEIGHT_SUFFIXES and not _TRAINING_STATE.match(child.name):
            parsed = parse_step(child.name)
            if parsed is None:
                continue
        else:
            continue
        step, unit = parsed
        if step in found:
            raise UsageError(
                f"two checkpoints in {folder} claim {unit} {step}: {found[step].path.name} and {child.name}; "
                "move one of them out"
            )
        found[step] = Checkpoint(step, child, unit)
    if not found:
        raise UsageError(
            f"no checkpoints in {folder}: looked for checkpoint-N/ folders and weight files with a step number "
            "in their name (model-step004000.safetensors, epoch_12.safetensors)"
        )
    units = {c.unit for c in found.values()}
    if len(units) > 1:
        raise UsageError(f"{folder} mixes checkpoints numbered by step and by epoch; put one series in a folder")
    return [found[s] for s in sorted(found)]


# --------------------------------------------------------------------------------------- hashing


def _hash_file(digest, path: Path) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)


def _content_files(path: Path) -> list[tuple[str, Path]]:
    """(name, file) pairs whose bytes decide what a scan of ``path`` sees."""
    if path.is_file():
        out = [(path.name, path)]
        for extra in (path.parent / "config.json", path.parent / "scheduler" / "scheduler_config.json"):
            if extra.is_file():
                out.append((str(extra.relative_to(path.parent)), extra))
        return out
    out = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if file.suffix.lower() in WEIGHT_SUFFIXES + (".json",) and not _TRAINING_STATE.match(file.name):
            out.append((str(file.relative_to(path)), file))
    if _CHECKPOINT_DIR.match(path.name):  # the loader reads the training run's scheduler/ beside checkpoint-N/
        sched = path.parent / "scheduler"
        if sched.is_dir():
            out += [(f"../scheduler/{f.name}", f) for f in sorted(sched.glob("*.json"))]
    return out


def content_hash(path: Union[str, Path]) -> str:
    """sha256 (hex) over the names and bytes of a checkpoint's weight and config files."""
    path = Path(path)
    if not path.exists():
        return "missing"
    digest = hashlib.sha256()
    for name, file in _content_files(path):
        digest.update(name.encode() + b"\0")
        _hash_file(digest, file)
    return digest.hexdigest()


def scan_settings(config: ScanConfig) -> dict:
    """Everything that decides a scan's result except the checkpoint: the resolved configuration
    without the checkpoint path, the contents of the files it names, and the collapsecheck version."""
    settings = config.as_dict()
    settings.pop("checkpoint", None)
    if "guidance" in settings:
        settings["guidance"] = list(settings["guidance"])
    inputs = {}
    for key in ("model_config", "scheduler", "cond", "lpips_weights", "adherence", "prompts", "base", "lora", "model"):
        value = settings.get(key)
        if isinstance(value, str) and value and Path(value).exists():
            inputs[key] = content_hash(value)
    return {"config": settings, "inputs": inputs, "collapsecheck": __version__, "schema_version": SCHEMA_VERSION}


def cache_key(checkpoint_hash: str, settings: dict) -> str:
    text = json.dumps({"checkpoint": checkpoint_hash, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ResultCache:
    """One JSON file per scan result, named by its key; ``folder=None`` disables it."""

    def __init__(self, folder: Optional[Union[str, Path]]):
        self.folder = None if folder is None else Path(folder)

    def path(self, key: str) -> Optional[Path]:
        return None if self.folder is None else self.folder / f"{key}.json"

    def get(self, key: str) -> Optional[dict]:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("key") != key or record.get("cache_format") != CACHE_FORMAT:
            return None
        result = record.get("result")
        return result if isinstance(result, dict) else None

    def put(self, key: str, result: dict, checkpoint: str, settings: dict) -> None:
        if self.folder is None:
            return
        from .report.jsonfile import json_ready, write_atomic

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the cache folder {self.folder}: {exc.strerror or exc}; "
                             "pass --cache-dir elsewhere or --no-cache") from None
        record = {"cache_format": CACHE_FORMAT, "key": key, "checkpoint": checkpoint, "settings": settings,
                  "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "result": result}
        try:  # the temporary file is gone when this fails; the entry is complete or absent
            write_atomic(self.path(key), json.dumps(json_ready(record), indent=1, allow_nan=False, default=str) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write the cache entry {self.path(key)}: {exc.strerror or exc}; "
                             "pass --cache-dir elsewhere or --no-cache") from None


# --------------------------------------------------------------------------------------- analysis


def onset(verdicts: Sequence[tuple[int, str]]) -> Optional[int]:
    """The first step from which the verdict stays worse than healthy to the last checkpoint; None
    when the last checkpoint is healthy. ``verdicts``: (step, collapse verdict) in step order."""
    start = None
    for step, verdict in verdicts:
        if verdict == "healthy":
            start = None
        elif start is None:
            start = step
    return start


def largest_drop(values: Sequence[tuple[int, Optional[float]]]) -> Optional[dict]:
    """The largest fall of a number between consecutive checkpoints: the step it arrived at, the
    previous step, before, after, and the drop (absolute and as a fraction of before). None without a fall."""
    best = None
    pairs = [(s, v) for s, v in values if v is not None]
    for (s0, v0), (s1, v1) in zip(pairs, pairs[1:]):
        drop = v0 - v1
        if drop > 0 and (best is None or drop > best["drop"]):
            best = {"step": s1, "previous_step": s0, "before": v0, "after": v1, "drop": drop,
                    "relative": drop / v0 if v0 else None}
    return best


def _mean(values) -> Optional[float]:
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def summarize(step: int, path: Union[str, Path], data: dict, cached: bool, checkpoint_hash: str) -> dict:
    """One checkpoint's row: verdicts and means over conditions at the verdict scale."""
    conds = data["conditions"]
    g = data["guidance"]
    return {
        "step": step,
        "path": str(path),
        "content_hash": checkpoint_hash[:16],
        "verdict": data["verdict"],
        "guidance": g["verdict"],
        "null_branch": (g.get("null_branch") or {}).get("verdict"),
        "pixel_rms": _mean(c.get("pixel_rms") for c in conds),
        "seed_share": _mean(c.get("seed_share") for c in conds),
        "lpips": _mean(c.get("lpips") for c in conds),
        "near_duplicates": _mean(c.get("near_duplicates") for c in conds),
        "eps_ratio": _mean(c.get("eps_ratio") for c in conds),
        "max_shift": g.get("max_shift"),
        "collapsed": sum(c["verdict"] == "collapsed" for c in conds),
        "at_risk": sum(c["verdict"] == "at_risk" for c in conds),
        "conditions": len(conds),
        "seconds": data.get("seconds"),
        "cached": cached,
    }


@dataclass
class TrendResult:
    folder: str
    unit: str
    steps: list[dict]
    onset: Optional[int]
    largest_drop: Optional[dict]
    settings: dict
    cache: dict
    last: dict = field(repr=False)  # the last checkpoint's full result, as its JSON dict
    gate: dict = field(default_factory=dict)
    created: str = ""

    def to_dict(self) -> dict:
        return {
            "trend_schema_version": TREND_SCHEMA_VERSION,
            "folder": self.folder,
            "unit": self.unit,
            "onset": self.onset,
            "largest_drop": self.largest_drop,
            "gate": self.gate,
            "steps": self.steps,
            "settings": self.settings,
            "cache": self.cache,
            "created": self.created,
            "last": self.last,
        }


#: ``on_checkpoint(index, total, checkpoint, cached)`` is called before each checkpoint is scanned or read
OnCheckpoint = Callable[[int, int, Checkpoint, bool], None]


def run_trend(folder: Union[str, Path], config: ScanConfig, cache_dir: Optional[Union[str, Path]] = "default",
              scan_fn=None, progress=None, on_checkpoint: Optional[OnCheckpoint] = None,
              fail_on: str = "collapsed", world: World = SINGLE, resume: Optional[str] = None) -> Optional[TrendResult]:
    """Scan every checkpoint in ``folder`` with ``config`` (its checkpoint field is replaced).

    ``cache_dir``: ``"default"`` for ``folder/.collapsecheck-cache``, a folder, or None for no cache.
    ``scan_fn(config, progress) -> ScanResult`` defaults to :func:`collapsecheck.run.scan`.
    ``world``: this process among several (torchrun): it scans its share of the checkpoints
    (:func:`collapsecheck.distributed.shard`, caching each result), rank 0 gathers the rows and
    returns the trend, the other ranks None. ``resume``: the scans' ``--resume`` folder (work saved by
    earlier scans of these checkpoints, on any node, is read back instead of sampled).
    """
    folder = Path(folder)
    checkpoints = find_checkpoints(folder)
    if scan_fn is None:
        from . import run as scanner
        scan_fn = scanner.scan
    if resume:
        scan_fn = partial(scan_fn, resume=resume)
    cache = ResultCache(folder / CACHE_DIRNAME if cache_dir == "default" else cache_dir)
    settings = scan_settings(config)
    mine, last = {}, len(checkpoints) - 1
    for i in shard(len(checkpoints), world):
        row, data = checkpoint_row(checkpoints[i], config, cache, settings, scan_fn, progress,
                                   lambda cached, i=i: on_checkpoint and on_checkpoint(i, last + 1, checkpoints[i], cached))
        mine[i] = (row, data if i == last else None)  # rank 0 needs the last full result only
    parts = gather(mine, world)
    if not world.root:
        return None
    done = {i: row for part in parts for i, row in part.items()}
    rows = [done[i][0] for i in range(len(checkpoints))]
    hits = sum(1 for r in rows if r["cached"])
    gate = apply_gate(rows[-1]["verdict"], rows[-1]["guidance"], fail_on, null=rows[-1]["null_branch"])
    return TrendResult(
        folder=str(folder),
        unit=checkpoints[0].unit,
        steps=rows,
        onset=onset([(r["step"], r["verdict"]) for r in rows]),
        largest_drop=largest_drop([(r["step"], r["pixel_rms"]) for r in rows]),
        settings=settings,
        cache={"folder": None if cache.folder is None else str(cache.folder), "hits": hits, "misses": len(rows) - hits},
        last=done[last][1],
        gate={**gate.to_dict(), "checkpoint": str(checkpoints[-1].path)},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def checkpoint_row(ckpt: Checkpoint, config: ScanConfig, cache: ResultCache, settings: dict, scan_fn, progress,
                   notice: Callable[[bool], object]) -> tuple[dict, dict]:
    """One checkpoint's summary row and full result (JSON dict), read from the cache or scanned and cached."""
    digest = content_hash(ckpt.path)
    key = cache_key(digest, settings)
    data = cache.get(key)
    notice(data is not None)
    cached = data is not None
    if data is None:
        from .report.jsonfile import json_ready

        result = scan_fn(replace(config, checkpoint=str(ckpt.path)), progress)
        data = json_ready(result.to_dict())
        cache.put(key, data, str(ckpt.path), settings)
    return summarize(ckpt.step, ckpt.path, data, cached, digest), data


def trend_markdown(trend: TrendResult) -> str:
    """The trend as a Markdown table with the onset and largest drop named."""
    from .report.markdown import fmt, word

    unit = trend.unit
    out = [f"# collapsecheck trend: {trend.folder}", ""]
    if trend.onset is not None:
        out.append(f"**Collapse began at {unit} {trend.onset}**: from there on every checkpoint is worse than healthy.")
    else:
        out.append("The last checkpoint is healthy: no collapse onset.")
    drop = trend.largest_drop
    if drop:
        rel = f" ({drop['relative']:.0%})" if drop.get("relative") is not None else ""
        out.append(f"Largest diversity drop: mean pixel RMS {drop['before']:.3f} -> {drop['after']:.3f}{rel} "
                   f"between {unit} {drop['previous_step']} and {unit} {drop['step']}.")
    gate = trend.gate
    out += ["", f"Gate `--fail-on {gate['fail_on']}` on the last checkpoint: **{'pass' if gate['passed'] else 'FAIL'}**", ""]
    out += [f"| {unit} | verdict | pixel_rms ↑ | seed_share ↑ | lpips ↑ | eps_ratio | null branch | guidance | cached |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in trend.steps:
        out.append(f"| {r['step']} | {word(r['verdict'])} | {fmt(r['pixel_rms'])} | {fmt(r['seed_share'])} | "
                   f"{fmt(r['lpips'])} | {fmt(r['eps_ratio'])} | {word(r['null_branch'])} | {word(r['guidance'])} | "
                   f"{'yes' if r['cached'] else 'no'} |")
    out += ["", "↑ higher = more diverse; eps_ratio: higher = the condition pulls harder. Means over conditions at the verdict scale.", ""]
    return "\n".join(out)
