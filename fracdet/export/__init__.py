"""``fracdet export``: classifiers and detectors to ONNX, each checked against its PyTorch model.

``export_model`` writes ``OUT/model.onnx`` and ``OUT/export.json`` (the parity numbers,
opset, versions and sha256s); ``fracdet predict`` runs the result through onnxruntime.
"""

from fracdet.export.config import ExportConfig, ExportSummary
from fracdet.export.run import export_model, model_kind

__all__ = ["ExportConfig", "ExportSummary", "export_model", "model_kind"]
