"""Performance measurements (run by hand or by `python -m demo bench`; never timed in tests)."""
