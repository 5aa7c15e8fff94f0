"""Performance measurements, run by ``python -m demo bench`` (never timed in tests).

:mod:`~demo.bench.runner` runs the chosen sections and writes BENCHMARKS.md through
:mod:`~demo.bench.markdown`; one module per section: ``search`` (first stages against exact search),
``query`` (query latency), ``indexing`` and ``engines`` (build throughput, local and Ray), ``decode``,
``resizing``, ``importing``, ``scale`` (10M-row indexes), ``app`` (the app's start and API latency);
``data`` makes the synthetic data they run on and ``common`` holds what they share.
"""
