"""Format: a Hugging Face hub id (``org/name``), read from the local Hugging Face cache, never downloaded.

``collapsecheck scan org/name [--revision REV]`` finds the cached snapshot the way ``huggingface_hub`` itself does,
offline (``snapshot_download(..., local_files_only=True)``): the cache is ``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``; ``models--org--name/refs/<REV>`` names the commit of a branch
or tag (default ``main``), a 40-hex commit is looked up directly, and ``snapshots/<commit>/`` is the folder. That
folder is then loaded by the folder formats (``--model``, a ControlNet, a diffusers model folder, a pipeline),
and the result's notes say which snapshot commit was scanned. A hub id that is not cached is one usage line
naming the command that fetches it. A local path always wins over a hub id of the same spelling.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

from ..errors import UsageError, first_line
from . import controlnet, custom, model_folder, pipeline_folder
from .layout import unknown_folder_message
from .loaded import LoadedCheckpoint
from .options import LoadOptions, hub_repo_id

NAME = "Hugging Face hub id org/name, from the local HF cache (--revision)"
DEFAULT_REVISION = "main"
#: the formats a cached snapshot folder may be in, in the registry's order
FOLDER_FORMATS = (custom, controlnet, model_folder, pipeline_folder)


def detect(path: Path, options: LoadOptions) -> bool:
    """``path`` does not exist and reads as ``org/name`` (no file system access beyond that one ``exists``)."""
    return hub_repo_id(path) is not None


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    """The cached snapshot of the hub id at ``options.revision``, loaded as the folder formats load a folder."""
    repo_id = hub_repo_id(path)
    assert repo_id is not None, "hub.load called without a hub id; detect() first"
    revision = options.revision or DEFAULT_REVISION
    snapshot = cached_snapshot(repo_id, revision)
    fmt = next((f for f in FOLDER_FORMATS if f.detect(snapshot, options)), None)
    if fmt is None:
        raise UsageError(f"{repo_id} (revision {revision}): {unknown_folder_message(snapshot)}")
    loaded = fmt.load(snapshot, options)
    note = (f"Hugging Face hub id {repo_id}, revision {revision}: scanned the cached snapshot {snapshot.name} "
            f"({snapshot})")
    return replace(loaded, notes=(note, *loaded.notes))


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as ``huggingface_hub`` resolves it, read from the environment now (its own
    constant is read once, at import)."""
    env = os.environ
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not cache:
        xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        cache = os.path.join(env.get("HF_HOME") or os.path.join(xdg, "huggingface"), "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def cached_snapshot(repo_id: str, revision: str) -> Path:
    """The snapshot folder of ``repo_id`` at ``revision`` in the local cache; a one-line UsageError saying how to
    fetch it when it is not there (or only partly)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import LocalEntryNotFoundError

    cache = hub_cache_dir()
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=str(cache), local_files_only=True)
    except LocalEntryNotFoundError as exc:
        incomplete = type(exc).__name__ == "IncompleteSnapshotError"
        raise UsageError(not_cached_message(repo_id, revision, cache, first_line(exc) if incomplete else None)) \
            from None
    except ValueError as exc:  # huggingface_hub's validation of the id or revision
        raise UsageError(f"{repo_id}: not a Hugging Face hub id huggingface_hub accepts: {first_line(exc)}") from None
    return Path(folder)


def not_cached_message(repo_id: str, revision: str, cache: Path, incomplete: Optional[str] = None) -> str:
    """One line: what is missing from the cache, what is there, and the command that fetches it."""
    if incomplete:
        what = f"the cached snapshot of the Hugging Face model {repo_id} is incomplete ({incomplete})"
    else:
        cached = cached_revisions(cache / ("models--" + repo_id.replace("/", "--")))
        there = f" (cached: {', '.join(cached)})" if cached else ""
        what = (f"{repo_id} is not a local path, and the Hugging Face model {repo_id} at revision {revision} is not "
                f"in the local cache {cache}{there}")
    return f"{what}; collapsecheck never downloads: fetch it with `{fetch_command(repo_id, revision)}`, then rerun"


def cached_revisions(storage: Path) -> List[str]:
    """``ref -> commit`` for each cached ref of a repo folder of the cache, and the commits no ref names."""
    refs = {}
    if (storage / "refs").is_dir():
        refs = {p.relative_to(storage / "refs").as_posix(): p.read_text().strip()
                for p in sorted((storage / "refs").rglob("*")) if p.is_file()}
    named = set(refs.values())
    commits = sorted(p.name for p in (storage / "snapshots").glob("*") if p.is_dir() and p.name not in named) \
        if (storage / "snapshots").is_dir() else []
    return [f"{ref} -> {commit[:12]}" for ref, commit in refs.items()] + commits


def fetch_command(repo_id: str, revision: str) -> str:
    """The download command of the installed huggingface_hub: ``hf download`` (0.34 and later) or, before it,
    ``huggingface-cli download``."""
    from importlib import metadata

    try:
        scripts = {entry.name for entry in metadata.distribution("huggingface_hub").entry_points}
    except metadata.PackageNotFoundError:
        scripts = set()
    tool = "hf" if "hf" in scripts or "huggingface-cli" not in scripts else "huggingface-cli"
    extra = "" if revision == DEFAULT_REVISION else f" --revision {revision}"
    return f"{tool} download {repo_id}{extra}"
