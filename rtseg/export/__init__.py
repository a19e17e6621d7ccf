"""Export: PyTorch -> ONNX (fp32 and fp16) -> TensorRT engine, with parity gates and metadata.

``export_model(model, ExportOptions(...))`` is what ``rtseg export`` runs; the pieces live in
:mod:`rtseg.backends.onnx_export` (exporters, onnxslim), :mod:`rtseg.backends.onnx_fp16` (the FP16 variant),
:mod:`rtseg.export.parity` (gates), :mod:`rtseg.backends.metadata` (the sidecar),
:mod:`rtseg.export.profiles` (the shipped ``rtseg/export_profiles/*.json``, overridable from ``./export/``) and :mod:`rtseg.backends.tensorrt_build` (the engine builder).
"""

from rtseg.export.pipeline import ExportResult, export_model
from rtseg.export.profiles import ExportOptions, load_profile

__all__ = ["ExportOptions", "ExportResult", "export_model", "load_profile"]
