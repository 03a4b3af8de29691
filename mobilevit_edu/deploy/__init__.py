"""Deployment (§4.3, chapters 07 and 14): BatchNorm folding, channels-last and compilation
(``inference``), ONNX export (``export``), ONNX Runtime sessions and parity (``onnx_runtime``),
runtime comparisons (``runtimes``) and Core ML conversion (``coreml``)."""
