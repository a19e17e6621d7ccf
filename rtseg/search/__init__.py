"""Latency-constrained differentiable architecture search (see :mod:`rtseg.search.loop`)."""

from rtseg.search.loop import SearchConfig, SearchResult, run_search

__all__ = ["SearchConfig", "SearchResult", "run_search"]
