"""Training: CLIP4Clip stages on any (video, caption) data, the embedded recipe, and its X-CLIP.

A stage is a :class:`~demo.train.config.TrainConfig` run by the loop in :mod:`~demo.train.loop`
(optimiser, schedule, AMP, checkpoints, resume, validation); what each step sees is drawn in
:mod:`~demo.train.batches` and scored by the objectives in :mod:`~demo.train.objectives`, on top of
the generic losses in :mod:`~demo.train.losses` and the frame probes in :mod:`~demo.train.probes`.
:mod:`~demo.train.data` reads samples and decodes frames, :mod:`~demo.train.build` makes the model,
:mod:`~demo.train.recipes` chains the stages into the shipped models, :mod:`~demo.train.cards`
writes their model cards, :mod:`~demo.train.xclip` trains the X-CLIP, and :mod:`~demo.cli.train`
is the ``train`` command.
"""
