"""``fracdet export``: a classifier or a detector to ONNX, verified with onnxruntime at once.

The track is told by the file: a fracdet classifier (safetensors + JSON) goes through
``torch.onnx`` with its pixel-space contract (:mod:`fracdet.cls.onnx`), a YOLO ``.pt``
through Ultralytics' exporter (:mod:`fracdet.det.onnx`). Either way the new file is run
beside the original on the same inputs (seeded random images, plus real ones when a folder
is given, decoded as ``fracdet predict`` decodes them) before the export folder appears;
an export that does not reproduce its model is an error and leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fracdet import __version__
from fracdet.errors import ConfigError
from fracdet.export.config import FORMAT, RECORD, ExportConfig, ExportSummary
from fracdet.fsutil import atomic_output_dir, atomic_write_json, sha256_file
from fracdet.provenance import LIBRARIES, versions

__all__ = ["export_model", "model_kind"]

logger = logging.getLogger(__name__)


def model_kind(source: Path) -> str:
    """``"classifier"`` or ``"detector"`` from the file, or one line saying why neither.

    A classifier is anything ``load_classifier`` reads from files of its own (a run folder,
    ``.safetensors``, ``.json``, an imported ``.torchscript``); a detector is a YOLO ``.pt``.
    """
    from fracdet.cls.checkpoint import resolve_checkpoint
    from fracdet.cls.onnx import is_onnx_model

    source = Path(source)
    if not source.exists():
        raise ConfigError("model to export not found", source)
    if is_onnx_model(source):
        raise ConfigError("is already an ONNX model; export its PyTorch checkpoint", source)
    if source.is_file() and source.suffix.lower() == ".pt":
        return "detector"
    try:
        resolve_checkpoint(source)
    except ConfigError:
        raise ConfigError(
            "not a model to export: expected a fracdet classifier (run folder, .safetensors, "
            ".json or an imported .torchscript) or a YOLO detector (.pt)",
            source,
        ) from None
    return "classifier"


def export_model(cfg: ExportConfig) -> ExportSummary:
    """Export ``cfg.source`` to ``OUT/model.onnx``, check it against the original, write
    ``OUT/export.json`` (parity numbers, opset, versions, sha256s)."""
    from fracdet.cls.onnx import MODEL_FILE

    source = Path(cfg.source)
    kind = model_kind(source)
    out = cfg.output_folder
    if cfg.images is not None and not Path(cfg.images).is_dir():
        raise ConfigError("not a folder of images (--images)", cfg.images)
    with atomic_output_dir(out, overwrite=cfg.overwrite) as tmp:
        if kind == "classifier":
            details = _export_classifier(cfg, tmp)
        else:
            details = _export_detector(cfg, tmp)
        parity = details["parity"]
        onnx_path = tmp / MODEL_FILE
        record = {
            "format": FORMAT,
            "kind": kind,
            "fracdet_version": __version__,
            "source": {"path": str(source.resolve()), "sha256": details.pop("source_sha256")},
            "onnx": {
                "file": MODEL_FILE,
                "sha256": sha256_file(onnx_path),
                "bytes": onnx_path.stat().st_size,
                "opset": cfg.opset,
                **details.pop("contract"),
            },
            "parity": parity,
            "samples": details.pop("samples"),
            "seed": cfg.seed,
            "config": json.loads(json.dumps(asdict(cfg), default=str)),
            "versions": versions(("fracdet", *LIBRARIES, "onnx", "onnxruntime")),
        }
        if not parity["passed"]:
            numbers = ", ".join(
                f"{k}={v:.3g}" for k, v in parity.items() if "diff" in k or "unpaired" in k
            )
            raise ConfigError(
                f"the ONNX {kind} does not reproduce the PyTorch one: {numbers} (tolerance "
                f"{parity['tolerance']}; classifiers: --cls-tolerance)",
                source,
            )
        atomic_write_json(tmp / RECORD, record)
        _write_cards(source, kind, tmp, out, record)
    return ExportSummary(
        kind=kind, onnx=out / MODEL_FILE, record=out / RECORD, opset=cfg.opset, parity=parity
    )


# --- model cards --------------------------------------------------------------------------


def _write_cards(source: Path, kind: str, tmp: Path, out: Path, record: dict[str, Any]) -> None:
    """The export folder gets the source model's card (its evaluations and audit included, when
    it has one), now describing ``model.onnx`` (framework onnx) with the export and its parity.
    Nothing is written beside the source."""
    from dataclasses import replace

    from fracdet.errors import FracdetError
    from fracdet.report.model_card import (
        Export,
        model_file,
        now,
        read_model_card,
        write_model_card,
    )

    if kind == "classifier":
        from fracdet.cls.card import card_from_classifier_checkpoint as build
        from fracdet.cls.checkpoint import resolve_checkpoint

        weights = resolve_checkpoint(source)[0]
    else:
        from fracdet.det.card import card_from_detector_weights as build

        weights = source
    onnx = record["onnx"]
    parity = {k: v for k, v in record["parity"].items() if not isinstance(v, (list, dict))}
    entry = Export(
        format="onnx",
        file=str(out / onnx["file"]),
        sha256=onnx["sha256"],
        date=now(),
        details={"opset": onnx["opset"], "record": RECORD, **parity},
    )
    try:  # the source's card as it stands (its evaluations, its audit), else one from its files
        card = read_model_card(weights.parent)
    except (OSError, FracdetError):
        card = build(source)
    onnx_file = model_file(tmp / onnx["file"], "weights")
    exported = replace(
        card,
        model=replace(card.model, framework="onnx", files=(onnx_file,)),
        exports=(entry,),
    )
    write_model_card(tmp, exported)


# --- samples ------------------------------------------------------------------------------


def _real_samples(
    cfg: ExportConfig, *, cls_size: int | None, det_imgsz: int | None, keep_aspect: bool = True
) -> tuple[list[Any], dict[str, Any]]:
    """Up to ``max_images`` images of ``cfg.images`` decoded as predict decodes them."""
    if cfg.images is None or cfg.max_images == 0:
        return [], {"folder": None, "used": [], "skipped": []}
    from fracdet.predict.decode import DecodeDataset
    from fracdet.predict.inputs import list_inputs

    paths, _, real_names = list_inputs(Path(cfg.images))
    items = list(enumerate(paths[: cfg.max_images]))
    dataset = DecodeDataset(
        Path(cfg.images),
        items,
        cls_size=cls_size,
        det_imgsz=det_imgsz,
        overlays=False,
        cls_keep_aspect=keep_aspect,
        real_names=real_names,
    )
    decoded = [dataset[i] for i in range(len(dataset))]
    used = [d for d in decoded if d.reason is None]
    skipped = [{"path": d.path, "reason": d.reason} for d in decoded if d.reason is not None]
    if not used:
        raise ConfigError(
            "no readable image for the parity check (JPEG, PNG, TIFF, BMP, WebP or DICOM)",
            cfg.images,
        )
    arrays = [d.cls for d in used] if cls_size is not None else [d.det for d in used]
    info = {"folder": str(cfg.images), "used": [d.path for d in used], "skipped": skipped}
    return arrays, info


# --- classifier ---------------------------------------------------------------------------


def _export_classifier(cfg: ExportConfig, tmp: Path) -> dict[str, Any]:
    from fracdet.cls.checkpoint import load_classifier, resolve_checkpoint
    from fracdet.cls.onnx import INPUT_NAME, MODEL_FILE, OUTPUT_NAME, OnnxClassifier
    from fracdet.cls.onnx import export_classifier_onnx as export_onnx

    model, meta = load_classifier(cfg.source)
    size = meta.image_size
    real, sample_info = _real_samples(
        cfg, cls_size=size, det_imgsz=None, keep_aspect=meta.keep_aspect
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    random = torch.rand(cfg.n_random, 1, size, size, generator=generator)
    edges = torch.stack([torch.zeros(1, size, size), torch.ones(1, size, size)])
    inputs = torch.cat([random, edges, *([torch.stack(real)] if real else [])])
    export_onnx(model, tmp / MODEL_FILE, image_size=size, meta_json=meta.to_json(), opset=cfg.opset)
    runner = OnnxClassifier(tmp / MODEL_FILE)
    with torch.no_grad():
        expected = model(inputs).numpy()
    got = runner(inputs).numpy()
    single = runner(inputs[:1]).numpy()  # the batch axis is dynamic: one image alone too
    diff = float(max(np.abs(expected - got).max(), np.abs(expected[:1] - single).max()))
    weights, meta_path = resolve_checkpoint(cfg.source)
    return {
        "source_sha256": {
            weights.name: sha256_file(weights),
            meta_path.name: sha256_file(meta_path),
        },
        "contract": {
            "input": {
                "name": INPUT_NAME,
                "shape": ["batch", 1, size, size],
                "dtype": "float32",
                "range": [0.0, 1.0],
                "resize": meta.resize,
                "normalisation": "inside the model",
                "mean": list(meta.mean),
                "std": list(meta.std),
            },
            "output": {
                "name": OUTPUT_NAME,
                "shape": ["batch"] if meta.binary else ["batch", meta.num_outputs],
                "class_names": list(meta.class_names),
                "threshold": meta.threshold,
                "temperature": meta.temperature,
            },
            "backbone": meta.backbone,
        },
        "parity": {
            "max_abs_diff": diff,
            "n_inputs": int(inputs.shape[0]),
            "n_random": cfg.n_random,
            "n_real": len(real),
            "batch_sizes": [int(inputs.shape[0]), 1],
            "tolerance": cfg.cls_tolerance,
            "passed": diff <= cfg.cls_tolerance,
        },
        "samples": sample_info,
    }


# --- detector -----------------------------------------------------------------------------


def _detector_imgsz(cfg: ExportConfig) -> int:
    """``cfg.imgsz``, else the size the detector was trained at (its checkpoint says), else 640."""
    if cfg.imgsz is not None:
        return cfg.imgsz
    from fracdet.det.model import load_detector

    size = load_detector(cfg.source, trust_pickle=cfg.trust_pickle).overrides.get("imgsz")
    if isinstance(size, (list, tuple)):
        size = max(size)
    return int(size) if size else 640


def _export_detector(cfg: ExportConfig, tmp: Path) -> dict[str, Any]:
    from fracdet.det.onnx import detector_parity, export_detector_onnx

    source = Path(cfg.source)
    imgsz = _detector_imgsz(cfg)
    real, sample_info = _real_samples(cfg, cls_size=None, det_imgsz=imgsz)
    rng = np.random.default_rng(cfg.seed)
    shapes = [(imgsz, imgsz), (imgsz, imgsz * 3 // 4), (imgsz * 3 // 4, imgsz)]
    random = [
        rng.integers(0, 256, size=shapes[i % len(shapes)], dtype=np.uint8)
        for i in range(cfg.n_random)
    ]
    onnx_path = export_detector_onnx(
        source, tmp, imgsz=imgsz, opset=cfg.opset, trust_pickle=cfg.trust_pickle
    )
    parity = detector_parity(
        source,
        onnx_path,
        random + real,
        imgsz=imgsz,
        conf=cfg.det_conf,
        iou=cfg.det_iou,
        seed=cfg.seed,
        trust_pickle=cfg.trust_pickle,
    )
    parity["n_random"], parity["n_real"] = len(random), len(real)
    return {
        "source_sha256": {source.name: sha256_file(source)},
        "contract": {
            "input": {
                "name": "images",
                "shape": ["batch", 3, "height", "width"],
                "dtype": "float32",
                "range": [0.0, 1.0],
                "resize": "letterbox (Ultralytics)",
                "exported_at": imgsz,
            },
            "output": {
                "name": "output0",
                "shape": ["batch", "4 + classes", "anchors"],
                "boxes": "cx, cy, w, h in input pixels; before NMS",
            },
            "exporter": "Ultralytics YOLO.export(format='onnx', dynamic=True, simplify=False)",
        },
        "parity": parity,
        "samples": sample_info,
    }
