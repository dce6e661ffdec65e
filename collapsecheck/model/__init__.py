"""model stage: a loaded checkpoint -> the denoiser the sampler calls (:func:`collapsecheck.model.build.denoiser_for`),
its noise schedule (:mod:`~collapsecheck.model.schedule`) and the flow-matching / EDM parametrizations."""
