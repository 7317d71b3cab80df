"""Smoke tests of the benchmarks in bench/: each runs and reports."""
