"""``fracdet predict``: both tracks over a folder of images, streaming, resumable, shardable.

One decode per image serves both tracks: a DataLoader worker reads the file once and hands
the main process the classifier input (the training transform, so predict sees what training
saw) and a small grey uint8 array for the detector. Nothing holds a list of decoded images,
so memory stays flat however large the folder is.

Rows are appended to ``predictions.csv`` and flushed batch by batch (detections go to a
``detections.jsonl`` journal first), so an interrupted run keeps its work and ``--resume``
continues it. ``--shard K/N`` takes a deterministic slice of the sorted file list; image ids
are positions in the full list, so :func:`merge_outputs` joins shards into what one unsharded
run would have written.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fracdet import __version__
from fracdet.data.formats import Box
from fracdet.data.geometry import content_region, scale_boxes
from fracdet.data.images import IMAGE_SUFFIXES, is_dicom, load_image
from fracdet.errors import ConfigError, DataError, ImageError, OutputExistsError
from fracdet.fsutil import (
    LinkMode,
    atomic_output_dir,
    atomic_write_bytes,
    atomic_write_json,
    place_file,
    sha256_file,
)
from fracdet.log import progress
from fracdet.provenance import versions
from fracdet.runtime import resolve_device, resolve_precision, seed_everything, ultralytics_device

__all__ = [
    "PredictConfig",
    "PredictSummary",
    "MergeSummary",
    "predict_folder",
    "merge_outputs",
    "list_inputs",
    "parse_shard",
    "shard_items",
]

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions.csv"
DETECTIONS = "detections.json"
DETECTIONS_LOG = "detections.jsonl"
IMAGES = "images.json"
REPORT = "predict_report.json"
OVERLAYS = "overlays"
#: Overlays are for looking at, not for measuring: a long side of 1024 px keeps them small.
OVERLAY_MAX_SIDE = 1024
_BASE_COLUMNS = ["image_id", "path", "status", "reason", "width", "height"]
_DET_COLUMNS = ["n_boxes", "max_box_score"]


@dataclass(frozen=True)
class PredictConfig:
    """Options of ``fracdet predict``; at least one of ``cls`` (classifier) and ``det`` (detector).

    ``shard`` is ``"K/N"`` (1-based K): this process takes every image whose index ``i`` in the
    sorted list has ``i % N == K - 1``. ``gradcam`` implies ``overlays``. ``trust_pickle``
    unpickles the ``det`` file in full instead of through Ultralytics' restricted loader.
    """

    folder: Path
    output: Path = Path("reports/predict")
    cls: Path | None = None
    det: Path | None = None
    recursive: bool = True
    batch_size: int = 16
    det_imgsz: int = 640
    det_conf: float = 0.25
    det_iou: float = 0.7
    overlays: bool = False
    gradcam: bool = False
    shard: str | None = None
    resume: bool = False
    overwrite: bool = False
    device: str | None = None
    precision: str = "auto"
    workers: int = 2
    seed: int = 0
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.det_imgsz >= 32, f"det_imgsz must be >= 32, got {self.det_imgsz}"),
            (0.0 <= self.det_conf <= 1.0, f"det_conf must be in [0, 1], got {self.det_conf}"),
            (0.0 < self.det_iou <= 1.0, f"det_iou must be in (0, 1], got {self.det_iou}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (not (self.resume and self.overwrite), "--resume continues an output and --overwrite replaces it: pass one"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        parse_shard(self.shard)

    def check_models(self) -> None:
        """The checks that involve ``cls``, run by :func:`predict_folder`, not at construction.

        ``build_config``'s first parameter is itself named ``cls``, so the CLI sets this field
        with ``dataclasses.replace`` after building; a config without models must exist
        in between.
        """
        if self.cls is None and self.det is None:
            raise ConfigError("give a classifier (--cls CKPT), a detector (--det PT) or both")
        if self.gradcam and self.cls is None:
            raise ConfigError("--gradcam explains the classifier: pass one with --cls")


@dataclass(frozen=True)
class PredictSummary:
    """What a predict run wrote, how much of it this call did, and how fast."""

    output: Path
    predictions: Path
    images: Path
    report: Path
    detections: Path | None
    overlays: Path | None
    n_images: int
    n_ok: int
    n_skipped: int
    n_processed: int
    n_resumed: int
    n_not_images: int
    n_boxes: int
    seconds: float
    images_per_s: float

    def line(self) -> str:
        resumed = f", {self.n_resumed} done before" if self.n_resumed else ""
        return (
            f"{self.n_images} images ({self.n_ok} ok, {self.n_skipped} skipped{resumed}; {self.n_not_images} non-image files ignored) "
            f"at {self.images_per_s:.1f} images/s -> {self.predictions}"
        )


@dataclass(frozen=True)
class MergeSummary:
    """What :func:`merge_outputs` joined."""

    output: Path
    n_shards: int
    n_images: int
    n_ok: int
    n_skipped: int
    n_boxes: int
    missing_shards: tuple[str, ...] = ()

    def line(self) -> str:
        missing = f"; MISSING shards {', '.join(self.missing_shards)}" if self.missing_shards else ""
        return f"{self.n_images} images ({self.n_ok} ok, {self.n_skipped} skipped) from {self.n_shards} shards -> {self.output / PREDICTIONS}{missing}"


# --- listing and sharding ------------------------------------------------------------------


def list_inputs(folder: Path, *, recursive: bool = True, exclude: Path | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """Image paths relative to ``folder`` (posix, sorted), and the files that are not images.

    Images are the raster suffixes of :data:`IMAGE_SUFFIXES` plus DICOM by suffix or by magic
    (exports often have no suffix). Hidden files and folders are ignored, as is ``exclude``
    (the output folder, when it lies inside the input: its overlays are not inputs).
    """
    folder = Path(folder)
    skip = os.path.realpath(exclude) if exclude is not None else None
    images: list[str] = []
    others: list[dict[str, str]] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and os.path.realpath(os.path.join(root, d)) != skip]
        if not recursive:
            dirs[:] = []
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES or is_dicom(path):
                images.append(rel)
            else:
                others.append({"path": rel, "reason": f"not an image (suffix {suffix or '(none)'}, no DICOM header)"})
    images.sort()
    others.sort(key=lambda o: o["path"])
    return images, others


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; ``None`` -> ``None``."""
    if spec is None or str(spec).strip() == "":
        return None
    parts = str(spec).strip().split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--shard must be K/N with whole numbers, e.g. 2/8, got {spec!r}") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard K/N needs 1 <= K <= N, got {spec!r}")
    return k, n


def shard_items(paths: Sequence[str], shard: tuple[int, int] | None) -> list[tuple[int, str]]:
    """``(image_id, path)`` of this shard; ids are 1-based positions in the full list, stable across shards."""
    if shard is None:
        return [(i + 1, p) for i, p in enumerate(paths)]
    k, n = shard
    return [(i + 1, paths[i]) for i in range(k - 1, len(paths), n)]


# --- decoding (DataLoader workers) ---------------------------------------------------------


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so the long side is at most ``max_side`` (INTER_AREA: no aliasing); never upscale."""
    import cv2

    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@dataclass
class _Decoded:
    """One file after the worker: its inputs for each track, or why it has none."""

    image_id: int
    path: str
    reason: str | None = None
    width: int = 0
    height: int = 0
    cls: torch.Tensor | None = None
    det: np.ndarray | None = None
    overlay: np.ndarray | None = None


@dataclass
class _Batch:
    items: list[_Decoded]
    cls: torch.Tensor | None

    def pin_memory(self) -> _Batch:
        return _Batch(self.items, self.cls.pin_memory() if self.cls is not None else None)


class _DecodeDataset(Dataset):
    """Reads each file once; a file that cannot be read becomes a reason, not an exception."""

    def __init__(self, folder: Path, items: Sequence[tuple[int, str]], *, cls_size: int | None, det_imgsz: int | None, overlays: bool) -> None:
        self.folder = Path(folder)
        self.items = list(items)
        self.cls_size = cls_size
        self.det_imgsz = det_imgsz
        self.overlays = overlays
        # Built here, in the main process: forked workers inherit it (and albumentations'
        # half-second import) instead of each paying for it before its first batch.
        self._transform = None
        if cls_size is not None:
            from fracdet.data.datasets import build_transform

            self._transform = build_transform(cls_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> _Decoded:
        image_id, rel = self.items[index]
        out = _Decoded(image_id, rel)
        try:
            pixels = load_image(self.folder / rel, channels=1)  # radiographs are grey; colour is averaged
        except ImageError as exc:
            out.reason = _one_line(exc.message)
            return out
        except OSError as exc:  # vanished file, permission...
            out.reason = _one_line(f"cannot read file ({exc.strerror or exc})")
            return out
        if pixels.size == 0:
            out.reason = "empty image (zero width or height)"
            return out
        out.height, out.width = pixels.shape
        if self._transform is not None:
            square = self._transform(image=pixels)["image"]
            out.cls = torch.from_numpy(np.clip(square, 0.0, 1.0)[None])
        if self.det_imgsz is not None or self.overlays:
            grey = _to_uint8(pixels)
            del pixels
            if self.det_imgsz is not None:
                # Ultralytics letterboxes to imgsz anyway: shrinking here, in parallel workers,
                # moves less data to the main process and gives it less to resize.
                out.det = _shrink(grey, self.det_imgsz)
            if self.overlays:
                out.overlay = _shrink(grey, OVERLAY_MAX_SIDE)
        return out


def _collate(items: list[_Decoded]) -> _Batch:
    """Stack the classifier inputs of the readable items (in the worker, off the main process)."""
    good = [item for item in items if item.cls is not None]
    cls = torch.stack([item.cls for item in good]) if good else None
    for item in good:
        item.cls = None  # the stacked copy is what travels
    return _Batch(items, cls)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --- overlays ------------------------------------------------------------------------------


def _draw_overlay(
    base: np.ndarray, item: _Decoded, boxes: Sequence[Box], scores: Sequence[float], label: str | None, cam: np.ndarray | None, cls_size: int | None
) -> np.ndarray:
    """The image at (at most) 1024 px with the Grad-CAM map blended in and the boxes drawn on top."""
    import cv2

    oh, ow = base.shape[:2]
    canvas = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    if cam is not None and cls_size is not None:
        top, left, h, w = content_region(item.height, item.width, cls_size)
        crop = cam[top : top + h, left : left + w]
        heat = cv2.applyColorMap(_to_uint8(cv2.resize(crop, (ow, oh), interpolation=cv2.INTER_LINEAR)), cv2.COLORMAP_JET)
        canvas = cv2.addWeighted(canvas, 0.6, heat, 0.4, 0.0)
    sx, sy = ow / item.width, oh / item.height
    thickness = max(1, round(max(oh, ow) / 400))
    font = max(0.35, max(oh, ow) / 1600)
    for box, score in zip(boxes, scores, strict=True):
        p1 = (int(round(box.x1 * sx)), int(round(box.y1 * sy)))
        p2 = (int(round(box.x2 * sx)), int(round(box.y2 * sy)))
        cv2.rectangle(canvas, p1, p2, (0, 0, 255), thickness)
        cv2.putText(canvas, f"{score:.2f}", (p1[0], max(p1[1] - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 255), thickness)
    if label:
        cv2.putText(canvas, label, (5, 5 + int(22 * font * 1.5)), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 255, 255), thickness)
    return canvas


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV only fails here on an empty image
        raise OSError(f"cannot encode {path.name} as PNG")
    atomic_write_bytes(path, data.tobytes())


def overlay_path(output: Path, rel: str) -> Path:
    """``output/overlays/<rel>.png``: the relative path mirrored, the full name kept (a.jpg and a.png may both exist)."""
    return Path(output) / OVERLAYS / f"{rel}.png"


# --- models --------------------------------------------------------------------------------


@dataclass
class _Models:
    device: torch.device
    precision: str
    classifier: Any = None
    meta: Any = None
    detector: Any = None
    det_names: tuple[str, ...] = ()
    explainer: Any = None
    checkpoints: dict[str, Any] = field(default_factory=dict)


def _load_models(cfg: PredictConfig) -> _Models:
    """Both models and what identifies them (paths, sha256), checked before any output is touched."""

    device = resolve_device(cfg.device)
    models = _Models(device=device, precision=resolve_precision(cfg.precision, device))
    if cfg.cls is not None:
        from fracdet.cls.checkpoint import load_classifier, resolve_checkpoint

        models.classifier, models.meta = load_classifier(cfg.cls, device=device)
        weights, meta_path = resolve_checkpoint(cfg.cls)
        models.checkpoints["cls"] = {
            "path": str(Path(cfg.cls).resolve()),
            "sha256": {weights.name: sha256_file(weights), meta_path.name: sha256_file(meta_path)},
            "backbone": models.meta.backbone,
            "class_names": list(models.meta.class_names),
            "image_size": models.meta.image_size,
            "threshold": models.meta.threshold,
            "temperature": models.meta.temperature,
        }
        if cfg.gradcam:
            from fracdet.explain import GradCAMExplainer

            models.explainer = GradCAMExplainer(models.classifier, image_size=models.meta.image_size, backbone_name=models.meta.backbone)
    if cfg.det is not None:
        from fracdet.det.model import load_detector, model_class_names

        det = Path(cfg.det)
        models.detector = load_detector(det, trust_pickle=cfg.trust_pickle)
        models.det_names = model_class_names(models.detector)
        models.checkpoints["det"] = {"path": str(det.resolve()), "sha256": {det.name: sha256_file(det)}, "class_names": list(models.det_names)}
    return models


# --- output files --------------------------------------------------------------------------


def _columns(meta: Any, with_cls: bool, with_det: bool) -> list[str]:
    if with_cls and not meta.binary:
        cls_columns = [f"p_{name}" for name in meta.class_names] + ["predicted_class"]
    else:
        cls_columns = ["fracture_probability", "fracture_decision"]
    return _BASE_COLUMNS + cls_columns + _DET_COLUMNS


def _identity(folder: Path, cfg: PredictConfig, models: _Models) -> dict[str, Any]:
    """What must not change between a run and its resume, or between shards to be merged."""
    det = {"imgsz": cfg.det_imgsz, "conf": cfg.det_conf, "iou": cfg.det_iou} if cfg.det is not None else None
    return {
        "folder": str(folder.resolve()),
        "recursive": cfg.recursive,
        "cls_sha256": models.checkpoints.get("cls", {}).get("sha256"),
        "det_sha256": models.checkpoints.get("det", {}).get("sha256"),
        "det_options": det,
    }


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        return header, [dict(zip(header, row, strict=False)) for row in reader if row]


def _cut_partial_line(path: Path) -> None:
    """An interrupted write can leave half a line at the end: drop it (that image is redone)."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        chunk = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            data = fh.read(pos - start)
            cut = data.rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            pos = start
        fh.truncate(0)


def _prepare_output(out: Path, cfg: PredictConfig, identity: dict[str, Any], header: list[str], items: Sequence[tuple[int, str]]) -> set[str]:
    """Create, replace or reopen the output; returns the paths already done (for ``--resume``)."""
    exists = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if exists and not (cfg.resume or cfg.overwrite):
        raise OutputExistsError("already exists; pass --resume to continue that run or --overwrite to replace it", out)
    if exists and cfg.overwrite:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
        exists = False
    if not exists:
        if cfg.resume:
            logger.info("nothing to resume in %s: starting a new run", out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / PREDICTIONS, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(header)
        (out / DETECTIONS_LOG).write_text("", encoding="utf-8")
        return set()
    report_path = out / REPORT
    if not (out / PREDICTIONS).is_file() or not report_path.is_file():
        raise OutputExistsError(f"is not a fracdet predict output (no {PREDICTIONS} / {REPORT}): cannot resume it; pass --overwrite or another --out", out)
    try:
        previous = json.loads(report_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"unreadable run report ({exc}); pass --overwrite to start again", report_path) from exc
    changed = [k for k, v in identity.items() if previous.get("identity", {}).get(k) != v]
    if previous.get("shard") != cfg.shard:
        changed.append("shard")
    if changed:
        raise ConfigError(f"cannot resume: this run differs from the one in the output in {', '.join(changed)}; pass --overwrite or another --out", out)
    return _reconcile(out, header, items)


def _reconcile(out: Path, header: list[str], items: Sequence[tuple[int, str]]) -> set[str]:
    """Match the rows already written to today's listing, by path.

    Files may have arrived or gone since the interrupted run: ids are positions in the sorted
    listing, so rows (and their detections) are renumbered, and rows of files no longer in
    this shard's listing are dropped, so that the result equals one fresh run.
    """
    _cut_partial_line(out / PREDICTIONS)
    old_header, rows = _read_rows(out / PREDICTIONS)
    if old_header != header:
        raise ConfigError(f"cannot resume: {PREDICTIONS} has other columns than this run writes; pass --overwrite", out / PREDICTIONS)
    new_ids = {rel: image_id for image_id, rel in items}
    remap: dict[int, int] = {}
    used: set[int] = set()
    kept: list[dict[str, str]] = []
    for row in rows:
        new_id = new_ids.get(row["path"])
        if new_id is None or new_id in used:
            overlay_path(out, row["path"]).unlink(missing_ok=True)
            continue
        used.add(new_id)
        remap[int(row["image_id"])] = new_id
        kept.append({**row, "image_id": str(new_id)})
    if len(kept) != len(rows) or any(old != new for old, new in remap.items()):
        if len(kept) != len(rows):
            logger.info("%d row(s) of files no longer in this listing were dropped", len(rows) - len(kept))
        kept.sort(key=lambda r: int(r["image_id"]))
        tmp = out / f".{PREDICTIONS}.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, out / PREDICTIONS)
    _keep_detections(out / DETECTIONS_LOG, remap)
    return {row["path"] for row in kept}


def _keep_detections(path: Path, remap: dict[int, int]) -> None:
    """Keep journal lines of images with a CSV row (the row is the commit), under their new ids."""
    if not path.exists():
        path.write_text("", encoding="utf-8")
        return
    kept, changed = [], False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # half a line from an interrupted write
                changed = True
                continue
            new_id = remap.get(int(entry["image_id"]))
            if new_id is None:
                changed = True
                continue
            if new_id != entry["image_id"]:
                changed = True
                entry = {"image_id": new_id, "results": [{**r, "image_id": new_id} for r in entry["results"]]}
            kept.append(json.dumps(entry) + "\n")
    if changed:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)


def _finish_outputs(out: Path, header: list[str], det_names: Sequence[str], with_det: bool) -> dict[str, Any]:
    """Sort the CSV if a resume left it out of order; write images.json and detections.json."""
    _, rows = _read_rows(out / PREDICTIONS)
    ids = [int(r["image_id"]) for r in rows]
    if ids != sorted(ids):
        order = sorted(range(len(rows)), key=ids.__getitem__)
        tmp = out / f".{PREDICTIONS}.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows[i] for i in order)
        os.replace(tmp, out / PREDICTIONS)
        rows = [rows[i] for i in order]
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(det_names)]
    images = [
        {"id": int(r["image_id"]), "file_name": r["path"], "width": int(r["width"]), "height": int(r["height"])}
        for r in rows
        if r["status"] == "ok"
    ]
    atomic_write_json(out / IMAGES, {"images": images, "categories": categories})
    n_boxes = 0
    if with_det:
        entries: list[tuple[int, list[dict[str, Any]]]] = []
        with open(out / DETECTIONS_LOG, encoding="utf-8") as fh:
            for line in fh:
                entry = json.loads(line)
                entries.append((int(entry["image_id"]), entry["results"]))
        entries.sort(key=lambda e: e[0])
        results = [r for _, found in entries for r in found]
        n_boxes = len(results)
        tmp = out / f".{DETECTIONS}.tmp"
        tmp.write_text(json.dumps(results) + "\n", encoding="utf-8")
        os.replace(tmp, out / DETECTIONS)
    skipped = [{"image_id": int(r["image_id"]), "path": r["path"], "reason": r["reason"]} for r in rows if r["status"] != "ok"]
    return {"n_images": len(rows), "n_ok": len(images), "n_skipped": len(skipped), "n_boxes": n_boxes, "skipped": skipped}


# --- the run -------------------------------------------------------------------------------


def _check_locations(folder: Path, out: Path) -> None:
    if not folder.exists():
        raise DataError("input folder not found", folder)
    if not folder.is_dir():
        raise DataError("not a folder (predict takes a folder of images)", folder)
    f, o = os.path.realpath(folder), os.path.realpath(out)
    if f == o or f.startswith(o + os.sep):
        raise ConfigError(f"the output folder {out} contains the input folder: choose another --out", out)


def predict_folder(cfg: PredictConfig) -> PredictSummary:
    """Classify and/or detect every image of ``cfg.folder`` (this shard), writing as it goes.

    Writes ``predictions.csv``, ``images.json``, ``detections.json`` (with a detector),
    ``predict_report.json`` and, if asked, ``overlays/`` into ``cfg.output``. Unreadable
    images get a ``skipped`` row with the reason; the run goes on.
    """
    cfg.check_models()
    folder, out = Path(cfg.folder), Path(cfg.output)
    _check_locations(folder, out)
    paths, not_images = list_inputs(folder, recursive=cfg.recursive, exclude=out)
    if not paths:
        found = f" ({len(not_images)} other files, e.g. {not_images[0]['path']})" if not_images else ""
        raise DataError(f"no images found (JPEG, PNG, TIFF, BMP, WebP or DICOM){found}", folder)
    shard = parse_shard(cfg.shard)
    items = shard_items(paths, shard)
    seed_everything(cfg.seed)
    models = _load_models(cfg)
    meta = models.meta
    with_cls, with_det = models.classifier is not None, models.detector is not None
    overlays = cfg.overlays or cfg.gradcam
    header = _columns(meta, with_cls, with_det)
    identity = _identity(folder, cfg, models)
    done = _prepare_output(out, cfg, identity, header, items)
    todo = [item for item in items if item[1] not in done]
    report: dict[str, Any] = {
        "fracdet_version": __version__,
        "status": "running",
        "identity": identity,
        "shard": cfg.shard,
        "seed": cfg.seed,
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "checkpoints": models.checkpoints,
        "device": str(models.device),
        "precision": models.precision,
        "versions": versions(),
        "n_listed": len(paths),
        "n_in_shard": len(items),
        "not_images": not_images,
    }
    atomic_write_json(out / REPORT, report)
    if not_images:
        logger.info("%d non-image file(s) ignored (listed in %s)", len(not_images), out / REPORT)

    dataset = _DecodeDataset(
        folder, todo, cls_size=meta.image_size if with_cls else None, det_imgsz=cfg.det_imgsz if with_det else None, overlays=overlays
    )
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        collate_fn=_collate,
        pin_memory=models.device.type == "cuda",
        prefetch_factor=2 if cfg.workers else None,
    )
    start = time.perf_counter()
    processed = 0
    try:
        with open(out / PREDICTIONS, "a", newline="", encoding="utf-8") as csv_fh, open(out / DETECTIONS_LOG, "a", encoding="utf-8") as det_fh:
            writer = csv.writer(csv_fh)
            for _ in progress(_run_batches(loader, models, cfg, out, header, writer, csv_fh, det_fh, overlays), "Predicting", total=len(todo)):
                processed += 1
    except KeyboardInterrupt:
        logger.warning("interrupted after %d image(s); the rows written so far are kept: rerun with --resume to continue", processed)
        raise
    seconds = time.perf_counter() - start
    rate = processed / seconds if seconds > 0 and processed else 0.0
    counts = _finish_outputs(out, header, models.det_names, with_det)
    report.update(
        status="complete",
        counts={k: v for k, v in counts.items() if k != "skipped"},
        n_processed=processed,
        n_resumed=len(done),
        seconds=round(seconds, 3),
        images_per_s=round(rate, 2),
        skipped=counts["skipped"],
    )
    atomic_write_json(out / REPORT, report)
    if counts["n_skipped"]:
        logger.warning("%d image(s) could not be read and were skipped (reasons in %s)", counts["n_skipped"], out / PREDICTIONS)
    return PredictSummary(
        output=out,
        predictions=out / PREDICTIONS,
        images=out / IMAGES,
        report=out / REPORT,
        detections=out / DETECTIONS if with_det else None,
        overlays=out / OVERLAYS if overlays else None,
        n_images=counts["n_images"],
        n_ok=counts["n_ok"],
        n_skipped=counts["n_skipped"],
        n_processed=processed,
        n_resumed=len(done),
        n_not_images=len(not_images),
        n_boxes=counts["n_boxes"],
        seconds=seconds,
        images_per_s=rate,
    )


def _run_batches(loader: DataLoader, models: _Models, cfg: PredictConfig, out: Path, header: list[str], writer: Any, csv_fh: Any, det_fh: Any, overlays: bool) -> Iterator[None]:
    """Predict batch by batch; yields once per image so the progress bar counts images/s."""
    from fracdet.cls.inference import probabilities
    from fracdet.det.evaluate import predictions_to_coco_results, result_boxes
    from fracdet.det.model import ultralytics_offline
    from fracdet.runtime import autocast

    meta = models.meta
    det_options: dict[str, Any] = {
        "imgsz": cfg.det_imgsz, "conf": cfg.det_conf, "iou": cfg.det_iou, "verbose": False, "stream": True,
        # rect=False: every image is letterboxed to the same square whatever else is in its
        # batch, so shards and resumed runs give exactly the boxes of one unsharded run.
        "rect": False, "device": ultralytics_device(models.device),
    }  # fmt: skip
    if models.device.type == "cuda" and models.precision in ("fp16", "bf16"):
        det_options["quantize"] = 16  # Ultralytics' half precision (its `half` is deprecated)
    with ultralytics_offline():
        for batch in loader:
            good = [item for item in batch.items if item.reason is None]
            probs = classes = cams = None
            if models.classifier is not None and batch.cls is not None:
                images = batch.cls.to(models.device, non_blocking=True)
                with torch.no_grad(), autocast(models.device, models.precision):
                    logits = models.classifier(images).float().cpu().numpy()
                probs = probabilities(logits, meta.temperature)
                classes = None if meta.binary else probs.argmax(axis=1)
                if models.explainer is not None:
                    cams = models.explainer.attribute(images.float(), None if classes is None else classes.tolist())
            detections: list[tuple[list[Box], list[float]]] = []
            if models.detector is not None and good:
                results = models.detector.predict([item.det for item in good], **det_options)
                for item, result in zip(good, results, strict=True):
                    detections.append(_to_original_frame(result_boxes(result), item, result.orig_shape))
            rows: list[list[Any]] = []
            journal: list[str] = []
            k = 0
            for item in batch.items:
                if item.reason is not None:
                    rows.append([item.image_id, item.path, "skipped", item.reason, "", ""] + [""] * (len(header) - 6))
                    continue
                row: list[Any] = [item.image_id, item.path, "ok", "", item.width, item.height]
                label = None
                if probs is None:
                    row += [""] * (len(header) - 6 - 2)
                elif meta.binary:
                    p = float(probs[k])
                    decision = meta.class_names[int(p >= meta.threshold)]
                    row += [f"{p:.8f}", decision]
                    label = f"{decision} p={p:.2f}"
                else:
                    best = int(classes[k])
                    row += [f"{float(p):.8f}" for p in probs[k]] + [meta.class_names[best]]
                    label = f"{meta.class_names[best]} p={float(probs[k][best]):.2f}"
                boxes, scores = detections[k] if detections else ([], [])
                if models.detector is not None:
                    row += [len(boxes), f"{max(scores, default=0.0):.6f}"]
                    if boxes:
                        journal.append(json.dumps({"image_id": item.image_id, "results": predictions_to_coco_results(item.image_id, boxes, scores)}) + "\n")
                else:
                    row += ["", ""]
                if overlays and item.overlay is not None:
                    cam = cams[k] if cams is not None else None
                    _write_png(overlay_path(out, item.path), _draw_overlay(item.overlay, item, boxes, scores, label, cam, meta.image_size if meta else None))
                rows.append(row)
                k += 1
            # The journal first, the CSV row last: a row means the image is done (see --resume).
            if journal:
                det_fh.writelines(journal)
                det_fh.flush()
            writer.writerows(rows)
            csv_fh.flush()
            for _ in batch.items:
                yield None


def _to_original_frame(found: tuple[list[Box], list[float]], item: _Decoded, det_shape: tuple[int, int]) -> tuple[list[Box], list[float]]:
    """Boxes from the detector's (shrunk) input back to the original image's pixels, clipped to it."""
    boxes, scores = found
    return scale_boxes(boxes, scores, from_shape=tuple(det_shape[:2]), to_shape=(item.height, item.width))


# --- merging shards ------------------------------------------------------------------------


def merge_outputs(shard_dirs: Sequence[Path], output: Path, *, overwrite: bool = False) -> MergeSummary:
    """Join the outputs of ``--shard K/N`` runs into what one unsharded run writes.

    The shards must be complete and come from the same folder, checkpoints (sha256) and
    detector options; an image id in two shards is a :class:`DataError`. Overlays are
    hard-linked (copied across file systems) into ``output/overlays``.
    """
    if not shard_dirs:
        raise ConfigError("give at least one shard output folder to merge")
    reports: list[dict[str, Any]] = []
    for shard_dir in shard_dirs:
        shard_dir = Path(shard_dir)
        path = shard_dir / REPORT
        if not path.is_file():
            raise DataError(f"not a fracdet predict output (no {REPORT})", shard_dir)
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"unreadable run report ({exc})", path) from exc
        if report.get("status") != "complete":
            raise DataError("this shard's run did not finish: rerun it with --resume first", shard_dir)
        reports.append(report)
    first = reports[0]
    for shard_dir, report in zip(shard_dirs[1:], reports[1:], strict=True):
        for key in ("folder", "recursive", "cls_sha256", "det_sha256", "det_options"):
            if report["identity"].get(key) != first["identity"].get(key):
                what = {"folder": "input folder", "cls_sha256": "classifier checkpoint", "det_sha256": "detector checkpoint"}.get(key, key)
                raise DataError(f"made with another {what} than {shard_dirs[0]} ({report['identity'].get(key)} vs {first['identity'].get(key)})", shard_dir)

    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    owner: dict[int, Path] = {}
    results: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    categories = None
    for shard_dir in map(Path, shard_dirs):
        shard_header, shard_rows = _read_rows(shard_dir / PREDICTIONS)
        if header is None:
            header = shard_header
        elif shard_header != header:
            raise DataError(f"{PREDICTIONS} has other columns than {Path(shard_dirs[0]) / PREDICTIONS}", shard_dir / PREDICTIONS)
        for row in shard_rows:
            image_id = int(row["image_id"])
            if image_id in owner:
                raise DataError(f"image id {image_id} ({row['path']}) is in {owner[image_id]} and in {shard_dir}: the same shard twice?", shard_dir)
            owner[image_id] = shard_dir
            rows.append(row)
        doc = json.loads((shard_dir / IMAGES).read_text(encoding="utf-8"))
        images.extend(doc["images"])
        categories = categories if categories is not None else doc["categories"]
        if (shard_dir / DETECTIONS).is_file():
            results.extend(json.loads((shard_dir / DETECTIONS).read_text(encoding="utf-8")))
    assert header is not None
    rows.sort(key=lambda r: int(r["image_id"]))
    images.sort(key=lambda i: i["id"])
    results.sort(key=lambda r: r["image_id"])  # stable: each image keeps its boxes' order
    missing = _missing_shards([r.get("shard") for r in reports])
    if missing:
        logger.warning("shards %s are missing from the merge: their images have no rows", ", ".join(missing))
    skipped = [{"image_id": int(r["image_id"]), "path": r["path"], "reason": r["reason"]} for r in rows if r["status"] != "ok"]
    with_det = first["identity"].get("det_sha256") is not None
    with atomic_output_dir(Path(output), overwrite=overwrite) as tmp:
        with open(tmp / PREDICTIONS, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_json(tmp / IMAGES, {"images": images, "categories": categories or []})
        if with_det:
            (tmp / DETECTIONS).write_text(json.dumps(results) + "\n", encoding="utf-8")
        for shard_dir in map(Path, shard_dirs):
            _link_tree(shard_dir / OVERLAYS, tmp / OVERLAYS)
        seconds = sum(float(r.get("seconds", 0.0)) for r in reports)
        processed = sum(int(r.get("n_processed", 0)) for r in reports)
        report = {
            "fracdet_version": __version__,
            "status": "complete",
            "merged_from": [str(Path(d).resolve()) for d in shard_dirs],
            "shards": [r.get("shard") for r in reports],
            "missing_shards": missing,
            "identity": first["identity"],
            "shard": None,
            "seed": first.get("seed"),
            "config": {**first.get("config", {}), "shard": None},
            "checkpoints": first.get("checkpoints"),
            "versions": versions(),
            "n_listed": first.get("n_listed"),
            "not_images": first.get("not_images", []),
            "counts": {"n_images": len(rows), "n_ok": len(images), "n_skipped": len(skipped), "n_boxes": len(results)},
            "images_per_s_per_shard": [r.get("images_per_s") for r in reports],
            "images_per_s": round(processed / seconds, 2) if seconds > 0 else 0.0,
            "skipped": skipped,
        }
        atomic_write_json(tmp / REPORT, report)
    return MergeSummary(Path(output), len(shard_dirs), len(rows), len(images), len(skipped), len(results), tuple(missing))


def _missing_shards(specs: Sequence[str | None]) -> list[str]:
    """``K/N`` specs that complete the set given (only when every shard names the same N)."""
    parsed = [parse_shard(s) for s in specs]
    if any(p is None for p in parsed) or len({p[1] for p in parsed}) != 1:  # type: ignore[index]
        return []
    n = parsed[0][1]  # type: ignore[index]
    present = {p[0] for p in parsed}  # type: ignore[index]
    return [f"{k}/{n}" for k in range(1, n + 1) if k not in present]


def _link_tree(src: Path, dst: Path) -> None:
    if not src.is_dir():
        return
    for root, _, files in os.walk(src):
        for name in files:
            if name.startswith("."):
                continue
            source = Path(root) / name
            target = dst / source.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            place_file(source, target, LinkMode.hardlink)
