"""Runners: one interface over PyTorch, ONNX Runtime and TensorRT (see :mod:`rtseg.runtime.base`)."""
