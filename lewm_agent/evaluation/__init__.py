"""Evaluation and analysis: the success protocol, diagnostics, oracle planners, probes, videos, plots."""
