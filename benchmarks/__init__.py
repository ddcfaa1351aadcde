"""Benchmarks: figures for humans, never pass/fail (`make bench`)."""
