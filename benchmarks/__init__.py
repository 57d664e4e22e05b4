"""Standalone performance scripts: ``python -m benchmarks.<name>``."""
