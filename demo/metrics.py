"""The retrieval metrics under the name the design promises (``demo.metrics.retrieval_metrics``).

They live with evaluation, in :mod:`demo.evaluate.metrics`; this module only re-exports them, so
code written against the documented interface keeps working.
"""

from demo.evaluate.metrics import metrics_from_ranks, moment_metrics, retrieval_metrics

__all__ = ["metrics_from_ranks", "moment_metrics", "retrieval_metrics"]
