"""Mean pairwise LPIPS across seeds, from offline weights only.

LPIPS v0.1 (Zhang et al. 2018) compares two images through a frozen ImageNet backbone (AlexNet or
VGG16) and per-channel linear weights ``w`` calibrated on human judgements::

    LPIPS(i, j) = sum_l mean_hw sum_c w_lc (f_lc(i) - f_lc(j))^2,   f = channel-unit-normalised features

With ``g_l(i) = sqrt(w_l) * f_l(i) / sqrt(H_l W_l)`` flattened, each layer's term is a squared
Euclidean distance, so :meth:`PairwiseLPIPS.pairwise` runs the backbone once per image (S passes,
not S^2) and gets the (S, S) matrix from a Gram matrix of seed-centred features in float64 (centring
keeps the near-identical samples of a collapsed model from cancelling). It equals
``lpips.LPIPS.forward`` on every pair. :meth:`PairwiseLPIPS.mean_pairwise` gives the mean over the pairs
of every cell of a (guidance, condition) grid at once (the backbone sees many cells' images per batch; each
cell's matrix comes from its rows of the features, the same numbers as ``pairwise``).

Nothing is ever downloaded. The backbone weights are looked for in: the ``weights`` argument,
``$COLLAPSECHECK_LPIPS_WEIGHTS``, ``${XDG_CACHE_HOME:-~/.cache}/collapsecheck/lpips/``, torch hub's checkpoint
folder. The calibrated linear layers come from the installed ``lpips`` package. When anything is missing or
does not match, :class:`LpipsUnavailable` says what and how to fix it. See ``docs/lpips.md``.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CollapsecheckError, EXIT_USAGE, did_you_mean, first_line

HIGHER_IS_MORE_DIVERSE = True  #: measure metadata, as reports show it
#: environment variable naming a backbone weight file, or a folder holding them
ENV_WEIGHTS = "COLLAPSECHECK_LPIPS_WEIGHTS"
#: images with a shorter side are upsampled to it before the backbone
MIN_SIDE = 64
#: input pixels per backbone batch in :meth:`PairwiseLPIPS.mean_pairwise` (256 images of 64x64, 4 of 512x512)
BATCH_PIXELS = 1 << 20
#: inputs outside [-RANGE_LIMIT, RANGE_LIMIT] are refused (they are not images in [-1, 1])
RANGE_LIMIT = 1.5
_FIX = "pass --lpips-weights PATH, set COLLAPSECHECK_LPIPS_WEIGHTS, or run tools/get_lpips_weights.sh"


class LpipsUnavailable(CollapsecheckError):
    """The LPIPS metric cannot be built or applied; ``reason`` is one line saying why and how to fix it."""

    exit_code = EXIT_USAGE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _NetSpec:
    label: str
    backbone: str  # collapsecheck file stem: alexnet.safetensors
    hub_file: str  # the file torchvision downloads into torch hub's checkpoints/
    lin_file: str  # inside the lpips package: weights/v0.1/<lin_file>
    layers: tuple  # ("C", out, kernel, stride, pad) | ("M", kernel, stride); a ReLU follows each conv
    taps: tuple[int, ...]  # indices in ``features`` of the ReLUs LPIPS compares
    channels: tuple[int, ...]


_VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
SPECS: dict[str, _NetSpec] = {
    "alex": _NetSpec(
        "AlexNet", "alexnet", "alexnet-owt-7be5be79.pth", "alex.pth",
        (("C", 64, 11, 4, 2), ("M", 3, 2), ("C", 192, 5, 1, 2), ("M", 3, 2),
         ("C", 384, 3, 1, 1), ("C", 256, 3, 1, 1), ("C", 256, 3, 1, 1)),
        (1, 4, 7, 9, 11), (64, 192, 384, 256, 256),
    ),
    "vgg": _NetSpec(
        "VGG16", "vgg16", "vgg16-397923af.pth", "vgg.pth",
        tuple(("M", 2, 2) if v == "M" else ("C", v, 3, 1, 1) for v in _VGG_CFG),
        (3, 8, 15, 22, 29), (64, 128, 256, 512, 512),
    ),
}


def build_features(net: str) -> nn.Sequential:
    """The backbone's convolutional trunk, randomly initialised, indexed like torchvision's ``.features``."""
    spec = _spec(net)
    mods: list[nn.Module] = []
    c_in = 3
    for layer in spec.layers:
        if layer[0] == "C":
            _, c_out, k, s, p = layer
            mods += [nn.Conv2d(c_in, c_out, k, stride=s, padding=p), nn.ReLU()]
            c_in = c_out
        else:
            mods.append(nn.MaxPool2d(layer[1], stride=layer[2]))
    return nn.Sequential(*mods)


def _spec(net: str) -> _NetSpec:
    if net not in SPECS:
        raise LpipsUnavailable(f"LPIPS net must be one of {', '.join(SPECS)}, but got '{net}'." + did_you_mean(net, SPECS))
    return SPECS[net]


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/collapsecheck/lpips``: where tools/get_lpips_weights.sh writes."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "collapsecheck" / "lpips"


def _in_folder(folder: Path, spec: _NetSpec) -> Path | None:
    for name in (f"{spec.backbone}.safetensors", spec.hub_file):
        if (folder / name).is_file():
            return folder / name
    return None


def find_backbone_weights(net: str = "alex", weights: str | Path | None = None) -> Path:
    """Resolve the backbone weight file (see the module docstring for the search order).

    An explicit path (argument or environment variable) that does not exist is an error, never a
    reason to look elsewhere. A folder is searched for ``alexnet.safetensors`` / ``vgg16.safetensors``
    and then torchvision's file name.
    """
    spec = _spec(net)
    for given, what in ((weights, "--lpips-weights"), (os.environ.get(ENV_WEIGHTS) or None, ENV_WEIGHTS)):
        if given is None:
            continue
        path = Path(given).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            found = _in_folder(path, spec)
            if found is None:
                raise LpipsUnavailable(
                    f"{what} folder {path} holds neither {spec.backbone}.safetensors nor {spec.hub_file}; "
                    "run tools/get_lpips_weights.sh"
                )
            return found
        raise LpipsUnavailable(f"{what} {path} does not exist; {_FIX}")
    folders = (cache_dir(), Path(torch.hub.get_dir()) / "checkpoints")
    for folder in folders:
        found = _in_folder(folder, spec)
        if found is not None:
            return found
    raise LpipsUnavailable(f"no {spec.label} backbone weights found in {folders[0]} or {folders[1]}: {_FIX}")


def _lpips_linear_file(spec: _NetSpec) -> Path:
    """The calibrated linear layers shipped inside the lpips package (located without importing it)."""
    found = importlib.util.find_spec("lpips")
    if found is None or not found.submodule_search_locations:
        raise LpipsUnavailable("the lpips package is not installed (it ships the LPIPS linear layers): pip install lpips")
    path = Path(list(found.submodule_search_locations)[0]) / "weights" / "v0.1" / spec.lin_file
    if not path.is_file():
        raise LpipsUnavailable(f"the lpips package has no {path}; reinstall it: pip install --force-reinstall lpips")
    return path


def _read_state(path: Path) -> Mapping[str, Tensor]:
    """Tensors from a .safetensors file, or a .pth/.pt file through torch's weights-only unpickler."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if path.suffix in (".pth", ".pt"):
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, Mapping):
                raise ValueError(f"holds a {type(state).__name__}, not a state dict")
            return state
    except Exception as exc:  # noqa: BLE001 -- any read failure becomes one clear line
        first = first_line(exc)
        raise LpipsUnavailable(f"cannot read LPIPS weights {path}: {first}") from exc
    raise LpipsUnavailable(f"LPIPS weights {path} must be a .safetensors, .pth or .pt file")


def _check_keys(expected: Mapping[str, tuple], state: Mapping[str, Tensor], path: Path, what: str) -> None:
    """Strict key and shape check, as one line naming the file and the first differences."""
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, expected {shape}"
        for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape
    ]
    problems += [f"{k} is not finite" for k in expected if k in state and not torch.isfinite(state[k]).all()]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise LpipsUnavailable(f"{path} does not hold {what}: {'; '.join(problems[:3])}{more}")


class PairwiseLPIPS(nn.Module):
    """LPIPS v0.1 as an (S, S) distance matrix over a set of images; build it with :func:`load_lpips`.

    Attributes: ``net`` ("alex" / "vgg"), ``source`` (the weight files used), ``resize_note`` (set by
    the last :meth:`pairwise` call: ``None``, or how small images were upsampled).
    """

    higher_is_more_diverse: ClassVar[bool] = HIGHER_IS_MORE_DIVERSE

    def __init__(self, net: str, features: nn.Sequential, lin: list[Tensor], source: str) -> None:
        super().__init__()
        spec = _spec(net)
        self.net, self.source, self.taps = net, source, spec.taps
        self.resize_note: str | None = None
        self.features = features[: spec.taps[-1] + 1].eval().requires_grad_(False)
        for k, w in enumerate(lin):
            self.register_buffer(f"sqrt_w{k}", w.reshape(1, -1, 1, 1).float().sqrt())
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def _prepare(self, images: Tensor) -> Tensor:
        """Check and convert (S, C, H, W) images in [-1, 1] to the backbone's 3-channel, >= 64 px input."""
        if images.ndim != 4:
            raise ValueError(f"LPIPS takes images of shape (S, C, H, W); got shape {tuple(images.shape)}")
        c, h, w = images.shape[1:]
        if c not in (1, 3):
            raise LpipsUnavailable(f"LPIPS needs 1- or 3-channel images; got {c} channels")
        x = images.to(device=self.shift.device, dtype=torch.float32)
        if x.numel() and x.abs().max() > RANGE_LIMIT:
            raise ValueError(
                f"LPIPS takes images in [-1, 1]; got values in [{x.min().item():.3g}, {x.max().item():.3g}]"
            )
        if c == 1:
            x = x.expand(-1, 3, -1, -1)
        self.resize_note = None
        size = backbone_size(h, w)
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            self.resize_note = (
                f"images of {h}x{w} px were upsampled (bilinear) to {size[0]}x{size[1]} px before the "
                f"{_spec(self.net).label} backbone, which needs >= {MIN_SIDE} px"
            )
        return (x - self.shift) / self.scale

    def _embed(self, x: Tensor) -> list[Tensor]:
        """Per tapped layer, ``sqrt(w) * unit-normalised features / sqrt(H W)`` flattened: (b, N_l)."""
        out, k = [], 0
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.taps[k]:
                f = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                g = f * getattr(self, f"sqrt_w{k}") / math.sqrt(f.shape[2] * f.shape[3])
                out.append(g.flatten(1))
                k += 1
        return out

    def _embed_all(self, x: Tensor, batch_size: int) -> list[Tensor]:
        """:meth:`_embed` of every image of ``x``, ``batch_size`` images at a time: (S, N_l) per layer."""
        chunks = [self._embed(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        return [torch.cat(layer) for layer in zip(*chunks)]

    def pairwise(self, images: Tensor, batch_size: int = 16) -> Tensor:
        """Symmetric (S, S) float64 LPIPS matrix with a zero diagonal, on the module's device.

        ``images``: (S, C, H, W) in [-1, 1], C in {1, 3}. The backbone sees ``batch_size`` images at a
        time; memory holds all S images' features (about 10 MB per 512x512 image for AlexNet).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, but got {batch_size}")
        with torch.inference_mode():
            x = self._prepare(images)
            layers = self._embed_all(x, batch_size) if x.shape[0] > 1 else []
            d2 = _distance_matrix(layers, x.shape[0], x.device)
        return d2.clone()  # a normal tensor again, usable outside inference mode

    def mean_pairwise(self, images: Tensor, progress: Callable[[int], None] | None = None) -> Tensor:
        """Mean LPIPS over the seed pairs i < j of every cell: ``images`` (..., S, C, H, W) -> (...) float64.

        The same numbers as :meth:`pairwise` cell by cell, but the backbone sees the images of many cells
        in one batch (up to :data:`BATCH_PIXELS` input pixels; every image once): far fewer, larger
        batches for small images. Cells holding exactly the same images (a scan's w = 0 column: the null
        trajectories, shared by every condition) are measured once. ``progress(n)`` is called after
        every ``n`` cells.
        """
        cells, s = images.shape[:-4], images.shape[-4]
        if s < 2:
            raise ValueError(f"mean_pairwise needs at least 2 images per cell; got shape {tuple(images.shape)}")
        flat = images.reshape((-1,) + tuple(images.shape[-4:]))
        distinct, copy_of = distinct_cells(flat)
        means = self._distinct_means(flat[distinct], progress)
        if progress is not None and len(distinct) < flat.shape[0]:
            progress(flat.shape[0] - len(distinct))
        return means[copy_of].reshape(cells)

    def _distinct_means(self, flat: Tensor, progress: Callable[[int], None] | None) -> Tensor:
        s = flat.shape[1]
        size = backbone_size(*flat.shape[-2:])
        batch = max(1, BATCH_PIXELS // (size[0] * size[1]))
        group = max(1, batch // s)  # cells per backbone pass
        i, j = torch.triu_indices(s, s, 1)
        means = torch.empty(flat.shape[0], dtype=torch.float64)
        with torch.inference_mode():
            for g0 in range(0, flat.shape[0], group):
                g1 = min(flat.shape[0], g0 + group)
                layers = self._embed_all(self._prepare(flat[g0:g1].flatten(0, 1)), batch)
                for c in range(g1 - g0):
                    cell = [g[c * s : (c + 1) * s] for g in layers]
                    means[g0 + c] = _distance_matrix(cell, s, flat.device)[i, j].mean()
                if progress is not None:
                    progress(g1 - g0)
        return means

    def cross(self, a: Tensor, b: Tensor, batch_size: int = 16) -> Tensor:
        """LPIPS between every image of ``a`` (A, C, H, W) and every image of ``b`` (B, C, H, W), both in [-1, 1]
        at one size: an (A, B) float64 matrix, the same numbers as :meth:`pairwise` on each pair."""
        with torch.inference_mode():
            fa = self._embed_all(self._prepare(a), batch_size)
            fb = self._embed_all(self._prepare(b), batch_size)
            d2 = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64, device=self.shift.device)
            for ga, gb in zip(fa, fb):
                centre = torch.cat([ga, gb]).double().mean(0, keepdim=True)  # as pairwise: centred, float64
                ga, gb = ga.double() - centre, gb.double() - centre
                d2 += ga.pow(2).sum(1)[:, None] + gb.pow(2).sum(1)[None, :] - 2.0 * ga @ gb.T
        return d2.clamp_min(0.0).clone()

    def forward(self, images: Tensor, batch_size: int = 16) -> Tensor:
        """Same as :meth:`pairwise`."""
        return self.pairwise(images, batch_size)

    def extra_repr(self) -> str:
        return f"net={self.net!r}, source={self.source!r}"


def distinct_cells(flat: Tensor) -> tuple[list[int], Tensor]:
    """The cells of ``flat`` (N, ...) that are not exact copies of an earlier one, and for every cell the
    position of its copy among them (N,): one pass of float64 sums as a fingerprint, ``torch.equal`` to confirm."""
    sums = flat.flatten(1).double().sum(1).tolist()
    distinct: list[int] = []
    copy_of = []
    by_sum: dict[float, list[int]] = {}
    for n, key in enumerate(sums):
        same = next((k for k in by_sum.get(key, []) if torch.equal(flat[distinct[k]], flat[n])), None)
        if same is None:
            same = len(distinct)
            distinct.append(n)
            by_sum.setdefault(key, []).append(same)
        copy_of.append(same)
    return distinct, torch.tensor(copy_of, dtype=torch.long)


def backbone_size(h: int, w: int) -> tuple[int, int]:
    """(height, width) of an h x w image as the backbone sees it: upsampled when the shorter side is < MIN_SIDE."""
    if min(h, w) >= MIN_SIDE:
        return h, w
    return max(MIN_SIDE, round(h * MIN_SIDE / min(h, w))), max(MIN_SIDE, round(w * MIN_SIDE / min(h, w)))


def _distance_matrix(layers: Sequence[Tensor], s: int, device: torch.device) -> Tensor:
    """The symmetric (S, S) float64 LPIPS matrix, zero diagonal, from each layer's (S, N_l) features."""
    d2 = torch.zeros(s, s, dtype=torch.float64, device=device)
    for g in layers:
        d2 += _centred_sq_dist(g)
    return ((d2 + d2.T) / 2).clamp_min(0.0).fill_diagonal_(0.0)


def _centred_sq_dist(g: Tensor, cols: int = 1 << 20) -> Tensor:
    """Squared Euclidean distances between the rows of ``g`` (S, N), in float64, by column blocks."""
    g = g - g.mean(0, keepdim=True)
    gram = torch.zeros(g.shape[0], g.shape[0], dtype=torch.float64, device=g.device)
    for a in range(0, g.shape[1], cols):
        block = g[:, a : a + cols].double()
        gram += block @ block.T
    sq = gram.diagonal()
    return sq[:, None] + sq[None, :] - 2.0 * gram


def load_lpips(net: str = "alex", weights: str | Path | None = None, device: str | torch.device = "cpu") -> PairwiseLPIPS:
    """Build LPIPS v0.1 from offline weights, with strict key checks; never downloads anything.

    ``weights``: a backbone file (torchvision ``alexnet``/``vgg16`` state dict: ``features.*``; any
    ``classifier.*`` keys are ignored) or a folder holding one. Raises :class:`LpipsUnavailable`.
    """
    spec = _spec(net)
    backbone_path = find_backbone_weights(net, weights)
    features = build_features(net)
    state = {k: v for k, v in _read_state(backbone_path).items() if not k.startswith("classifier.")}
    expected = {f"features.{k}": tuple(v.shape) for k, v in features.state_dict().items()}
    _check_keys(expected, state, backbone_path, f"torchvision {spec.label} weights")
    features.load_state_dict({k[len("features."):]: v for k, v in state.items()}, strict=True)

    lin_path = _lpips_linear_file(spec)
    lin_state = _read_state(lin_path)
    lin_expected = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(spec.channels)}
    _check_keys(lin_expected, lin_state, lin_path, f"LPIPS v0.1 {spec.label} linear layers")
    lin = [lin_state[k] for k in lin_expected]
    if any((w < 0).any() for w in lin):
        raise LpipsUnavailable(f"{lin_path} has negative linear weights; LPIPS v0.1 weights are >= 0")
    source = f"backbone {backbone_path}; linear layers {lin_path}"
    return PairwiseLPIPS(net, features, lin, source).to(device)


def mean_pairwise_lpips(dist: Tensor) -> float:
    """Mean of an (S, S) LPIPS matrix over the pairs i < j (S >= 2)."""
    s = dist.shape[-1]
    if dist.ndim != 2 or dist.shape[0] != s or s < 2:
        raise ValueError(f"mean_pairwise_lpips needs an (S, S) matrix with S >= 2; got shape {tuple(dist.shape)}")
    i, j = torch.triu_indices(s, s, offset=1, device=dist.device)
    return float(dist[i, j].mean())
