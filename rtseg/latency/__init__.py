"""Latency: timing primitives, per-operator profiling into LUTs, and LUT validation."""
