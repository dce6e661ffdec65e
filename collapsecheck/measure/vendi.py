"""Content diversity: the Vendi score (Friedman & Dieng 2023) over features of a local extractor.

``VS(x_1..x_n) = exp(-sum_i lambda_i log lambda_i)``, the ``lambda_i`` being the eigenvalues of ``K / n`` and
``K`` the cosine-similarity kernel of the samples' features (``K_ij = <f_i, f_j> / (|f_i| |f_j|)``, so
``K_ii = 1`` and the eigenvalues of ``K / n`` sum to 1). It is the effective number of distinct samples:
1 when all n features point the same way, n when they are pairwise orthogonal; always in [1, n].

The features come from a model folder the user has on disk (``--features PATH``), never downloaded, read
from safetensors only (``use_safetensors=True``: no pickle): a ``transformers`` DINOv2 (``Dinov2Model``, its
pooled CLS token), CLIP vision tower (``CLIPVisionModel``, its pooled output) or CLIP (``CLIPModel``, its
image embedding). Images in [-1, 1] go to [0, 1], to 3 channels, to the model's input size (bilinear) and
are normalised with the mean and std of its ``preprocessor_config.json`` (the model family's defaults
without one).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import UsageError, first_line

#: the model types --features takes (config.json ``model_type``), and the family's input defaults
FEATURE_MODELS = {
    "dinov2": {"size": 224, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "clip": {"size": 224, "mean": (0.4815, 0.4578, 0.4082), "std": (0.2686, 0.2613, 0.2758)},
    "clip_vision_model": {"size": 224, "mean": (0.4815, 0.4578, 0.4082), "std": (0.2686, 0.2613, 0.2758)},
}


def vendi_score(features: torch.Tensor) -> float:
    """The Vendi score of the rows of ``features`` (n, d) under the cosine kernel: in [1, n]."""
    if features.ndim != 2 or features.shape[0] < 1:
        raise ValueError(f"vendi_score takes features (n, d) with n >= 1; got shape {tuple(features.shape)}")
    x = features.double()
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = x.shape[0]
    eig = torch.linalg.eigvalsh(x @ x.T / n).clamp_min(0.0)
    eig = eig / eig.sum()
    nz = eig[eig > 0]
    return float(torch.exp(-(nz * nz.log()).sum()))


@dataclass
class FeatureExtractor:
    """A local image model's features of images in [-1, 1]: ``features(images)`` -> (n, d)."""

    path: str
    kind: str  # the config's model_type
    model: torch.nn.Module
    size: tuple[int, int]
    mean: torch.Tensor
    std: torch.Tensor

    def features(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for i in range(0, images.shape[0], batch_size):
                out.append(self._embed(self._prepare(images[i : i + batch_size])).float().cpu())
        return torch.cat(out)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        x = (images.to(device=device, dtype=torch.float32).clamp(-1, 1) + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise UsageError(f"--features: the feature model takes 1- or 3-channel images; the samples have "
                             f"{x.shape[1]} channels")
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return (x - self.mean.to(device).view(1, 3, 1, 1)) / self.std.to(device).view(1, 3, 1, 1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "clip":  # the projected image embedding: a tensor, or (transformers 5) an output's pooler_output
            out = self.model.get_image_features(pixel_values=x)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        return self.model(pixel_values=x).pooler_output

    def describe(self) -> dict:
        return {"path": self.path, "model_type": self.kind, "input_size": list(self.size),
                "kernel": "cosine similarity of the features", "range": "[1, seeds]"}


def load_features(path: str | Path, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The extractor in the local folder ``path``; a one-line UsageError when it is missing or unusable."""
    folder = Path(path)
    model_type = feature_model_type(folder)
    model = _from_pretrained(folder, model_type)
    size, mean, std = _input_spec(folder, model_type, model.config)
    return FeatureExtractor(str(folder), model_type, model.eval().requires_grad_(False).to(device), size,
                            torch.tensor(mean), torch.tensor(std))


def feature_model_type(folder: Path) -> str:
    """The ``model_type`` of the folder's config.json, one of :data:`FEATURE_MODELS` (a one-line UsageError
    otherwise); cheap, checked before a scan samples anything."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UsageError(f"--features {folder}: no such model folder (a local transformers folder with config.json "
                         "of DINOv2 or CLIP; nothing is downloaded)")
    try:
        model_type = json.loads(config_file.read_text())["model_type"]
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"--features {folder}: config.json has no model_type ({first_line(exc)})") from None
    if model_type not in FEATURE_MODELS:
        raise UsageError(f"--features {folder}: model_type '{model_type}' is not one of "
                         f"{', '.join(FEATURE_MODELS)} (DINOv2, CLIP)")
    if not any(folder.glob("*.safetensors")):
        raise UsageError(f"--features {folder}: no .safetensors weights (other formats are not read: no pickle)")
    return model_type


def _from_pretrained(folder: Path, model_type: str) -> torch.nn.Module:
    import transformers

    cls = {"dinov2": transformers.Dinov2Model, "clip": transformers.CLIPModel,
           "clip_vision_model": transformers.CLIPVisionModel}[model_type]
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 - whatever transformers raises is the user's folder's problem
        raise UsageError(f"--features {folder}: cannot load it as {cls.__name__} from safetensors: "
                         f"{first_line(exc)}") from None


def _input_spec(folder: Path, model_type: str, config) -> tuple[tuple[int, int], Sequence[float], Sequence[float]]:
    spec = dict(FEATURE_MODELS[model_type])
    vision = getattr(config, "vision_config", config)
    if model_type != "dinov2" and getattr(vision, "image_size", None):  # CLIP's position embeddings fix its size
        spec["size"] = int(vision.image_size)
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        try:
            data = json.loads(pre.read_text())
        except ValueError as exc:
            raise UsageError(f"--features {pre}: not JSON ({first_line(exc)})") from None
        spec["mean"], spec["std"] = data.get("image_mean", spec["mean"]), data.get("image_std", spec["std"])
        crop = data.get("crop_size")
        if isinstance(crop, dict) and "height" in crop:
            spec["size"] = int(crop["height"])
    return (spec["size"], spec["size"]), spec["mean"], spec["std"]


def vendi_per_condition(images: torch.Tensor, extractor: FeatureExtractor) -> list[float]:
    """The Vendi score of each condition's seeds: ``images`` (C, S, ch, H, W) in [-1, 1] -> C scores."""
    c, s = images.shape[:2]
    feats = extractor.features(images.flatten(0, 1)).reshape(c, s, -1)
    return [vendi_score(feats[i]) for i in range(c)]

