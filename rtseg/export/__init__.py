"""Export: PyTorch -> ONNX (fp32 and fp16) -> TensorRT engine, with parity gates and metadata."""
