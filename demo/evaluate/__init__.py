"""Evaluation: the retrieval benchmark table, its suites and the metrics it is scored with.

:mod:`~demo.evaluate.metrics` holds the pure metric functions (R@K, MdR, MnR over a similarity
matrix, ties counted against the query; moment IoU metrics); :mod:`~demo.evaluate.workflow` runs one
evaluation end to end (the CLI's ``evaluate`` and the app's rerun button); :mod:`~demo.evaluate.suites`
scores models on a corpus (:mod:`~demo.evaluate.corpus`: the embedded world's test split, or WebVid
CSV + videos), encoding it once through :mod:`~demo.evaluate.encode` (with a frame-feature cache);
:mod:`~demo.evaluate.published` scores the vectors published with the WebVid model;
:mod:`~demo.evaluate.queries` the free-form queries; :mod:`~demo.evaluate.moment_retrieval` moment
retrieval on long videos composed by :mod:`~demo.evaluate.longvideos`; :mod:`~demo.evaluate.results`
holds the result rows and writes Markdown, JSON and the recall plot.
"""
