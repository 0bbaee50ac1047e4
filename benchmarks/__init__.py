"""Benchmarks of issue 7: ingest, verify, query, proofs, rate-limit pacing, orchestration.

Run with ``make bench`` or ``python -m benchmarks --size tiny|small|full``.
"""
