"""Latency: per-operator profiling into LUTs, the LUT and its prediction model, calibration and LUT validation.

How anything is timed (the protocol, the per-backend timers, the device) lives with the backends, in
:mod:`rtseg.backends.timing`, :mod:`rtseg.backends.timers` and :mod:`rtseg.backends.device`.
"""
