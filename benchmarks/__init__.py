"""Benchmarks for d360-async: overhead, scale, budget use, detection delay, distribution.

Run them all with ``python -m benchmarks`` (``make bench``); ``--only NAME`` runs one section
and ``--quick`` a small smoke version.  Results go to ``benchmarks/results/latest.md`` and
``latest.json``.  Nothing here is imported by the library, and nothing here asserts timings:
the figures are measured and reported, targets met or missed alike.
"""
