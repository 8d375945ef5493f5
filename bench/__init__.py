"""The overhead benchmark of issue 6: `python -m bench` (see bench/RESULTS.md)."""
