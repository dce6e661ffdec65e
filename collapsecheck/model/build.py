"""One denoiser for whatever was loaded: ``denoiser_for(loaded)``.

A :class:`~collapsecheck.load.loaded.LoadedCheckpoint` carries the networks and the facts about them; here they
become the :class:`~collapsecheck.model.denoiser.Denoiser` the sampler calls: a ControlNet on its base UNet
(:class:`~collapsecheck.model.control.ControlDenoiser`), a ``--model`` network
(:class:`~collapsecheck.model.custom.CustomDenoiser`), or a diffusers network wrapped by its config
(:func:`~collapsecheck.model.denoiser.build_denoiser`), each with the checkpoint's decoder.
"""
from __future__ import annotations

from ..load.loaded import LoadedCheckpoint
from .control import ControlDenoiser
from .custom import CustomDenoiser
from .denoiser import Denoiser, build_denoiser


def denoiser_for(loaded: LoadedCheckpoint, concat_order: str = "after") -> Denoiser:
    """The denoiser of ``loaded``; ``concat_order`` (``--concat-order``) applies to concat-conditioned UNets."""
    if loaded.control is not None:
        parts = loaded.control
        return ControlDenoiser(
            model=parts.base_model, kind="control", sample_shape=tuple(parts.sample_shape), decoder=loaded.decoder,
            controlnet=loaded.model, text=parts.text, conditioning_scale=parts.conditioning_scale,
            hint_shape=tuple(parts.hint_shape), prompts=tuple(parts.prompts),
        )
    if loaded.custom is not None:
        return CustomDenoiser(model=loaded.custom.network, kind=loaded.conditions.kind,
                              sample_shape=tuple(loaded.custom.sample_shape), decoder=loaded.custom.decode)
    denoiser = build_denoiser(loaded.model, loaded.model_class, loaded.model_config, concat_order)
    denoiser.decoder = loaded.decoder
    return denoiser
