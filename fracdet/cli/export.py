"""Model conversion: ``export`` (ONNX, verified with onnxruntime)."""

from __future__ import annotations

from fracdet.cli.edge import clean_errors, echo_line
from fracdet.cli_options import ConfigOpt, OverwriteOpt, SeedOpt, TrustPickleOpt
from fracdet.cli_options.export import Export

__all__ = ["export"]


@clean_errors
def export(
    source: Export.source,
    output: Export.output = None,
    opset: Export.opset = None,
    images: Export.images = None,
    n_random: Export.n_random = None,
    max_images: Export.max_images = None,
    imgsz: Export.imgsz = None,
    det_conf: Export.det_conf = None,
    det_iou: Export.det_iou = None,
    cls_tolerance: Export.cls_tolerance = None,
    seed: SeedOpt = None,
    trust_pickle: TrustPickleOpt = False,
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export a classifier or a detector to ONNX and check it against PyTorch with onnxruntime."""
    from fracdet.config import build_config
    from fracdet.export import ExportConfig, export_model

    cfg = build_config(
        ExportConfig,
        config,
        source=source,
        output=output,
        opset=opset,
        images=images,
        n_random=n_random,
        max_images=max_images,
        imgsz=imgsz,
        det_conf=det_conf,
        det_iou=det_iou,
        cls_tolerance=cls_tolerance,
        seed=seed,
        trust_pickle=trust_pickle or None,
        overwrite=overwrite or None,
    )
    echo_line(export_model(cfg))
