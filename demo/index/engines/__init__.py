"""Index-building engines beyond the local one (:func:`demo.index.build.build_index`).

``ray_engine`` runs decoding and encoding on a Ray cluster (Ray Data map tasks and an actor
pool), ``workers`` holds the functions those tasks and actors run (plain Python: testable, and
importable, without Ray). Both write the local builder's work folder and merge it with
:func:`demo.index.merge.merge_index`. Ray is an optional dependency (requirements-scale.txt),
imported only when the Ray engine runs.
"""
