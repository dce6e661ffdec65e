"""load stage: a checkpoint on disk -> :class:`~collapsecheck.load.loaded.LoadedCheckpoint` (the networks and the
facts about them). Entry point: :func:`collapsecheck.load.dispatch.load_checkpoint`; the formats it knows and how a
format is written: :mod:`collapsecheck.load.registry`."""
