"""Detectors as ONNX: Ultralytics' own exporter, and a parity check against the ``.pt``.

The export is Ultralytics' (``YOLO.export(format="onnx")``): its graph, its metadata (task,
class names, stride, image size), which its ONNX Runtime backend reads back, so an exported
detector predicts through the same pre- and post-processing (letterbox, NMS, boxes in the
original frame) as the ``.pt``. ``simplify=False``: Ultralytics would otherwise try to
pip-install ``onnxslim`` at export time, and fracdet stays offline.

:func:`detector_parity` compares the two on the same inputs at two levels: the raw head
outputs (boxes in input pixels and class scores for every anchor, before any threshold) and
the boxes ``fracdet predict`` would write (after confidence threshold and NMS).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.det.model import ONNX_MODEL_FILE, load_detector, ultralytics_offline
from fracdet.errors import ConfigError

__all__ = [
    "BOX_TOLERANCE_PX",
    "SCORE_TOLERANCE",
    "export_detector_onnx",
    "detector_parity",
    "pair_boxes",
]

logger = logging.getLogger(__name__)

#: Largest difference allowed between the ``.pt`` and the ``.onnx`` box coordinates, in pixels
#: of the detector's input (float32 rounding of coordinates up to a few hundred pixels, through
#: differently fused convolutions, stays far below it).
BOX_TOLERANCE_PX = 1e-2
#: Largest difference allowed between their scores (sigmoid outputs in [0, 1]).
SCORE_TOLERANCE = 1e-4


@contextlib.contextmanager
def _ultralytics_quiet() -> Iterator[None]:
    """Ultralytics logs every export step at INFO on stdout; fracdet prints its own summary."""
    ul_logger = logging.getLogger("ultralytics")
    level = ul_logger.level
    if not logger.isEnabledFor(logging.DEBUG):
        ul_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ul_logger.setLevel(level)


def export_detector_onnx(
    source: Path, folder: Path, *, imgsz: int, opset: int, trust_pickle: bool = False
) -> Path:
    """Export the YOLO ``.pt`` at ``source`` to ``folder/model.onnx`` through Ultralytics.

    The ``.pt`` is copied into ``folder`` and loaded from there (through the restricted loader
    unless ``trust_pickle``), because Ultralytics writes the ``.onnx`` beside the file it
    loaded; the copy is removed afterwards, so nothing is written beside the source. The batch,
    height and width axes are dynamic (``predict --det-imgsz`` keeps working); opset ``opset``.
    """
    copy = folder / Path(ONNX_MODEL_FILE).with_suffix(".pt").name
    shutil.copyfile(source, copy)
    try:
        model = load_detector(copy, trust_pickle=trust_pickle)
        with ultralytics_offline(), _ultralytics_quiet():
            written = model.export(
                format="onnx",
                imgsz=imgsz,
                opset=opset,
                dynamic=True,
                simplify=False,
                nms=False,
                batch=1,
                device="cpu",
                verbose=False,
            )
    except ConfigError:
        raise
    except Exception as exc:  # Ultralytics and torch.onnx raise many types for a failed export
        raise ConfigError(
            f"Ultralytics' ONNX export failed ({type(exc).__name__}: {exc})", source
        ) from exc
    finally:
        copy.unlink(missing_ok=True)
    path = Path(written)
    if path != folder / ONNX_MODEL_FILE:  # Ultralytics names it after the loaded file
        path.replace(folder / ONNX_MODEL_FILE)
    return folder / ONNX_MODEL_FILE


def _raw_outputs(model: Any, onnx_path: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's ``(B, 4 + classes, anchors)`` output from PyTorch and from onnxruntime."""
    import onnxruntime as ort
    import torch

    net = model.model.eval().float().cpu()
    with torch.no_grad():
        out = net(torch.from_numpy(batch))
    torch_out = (out[0] if isinstance(out, (tuple, list)) else out).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: batch})
    return torch_out, onnx_out


def pair_boxes(
    boxes_a: np.ndarray, scores_a: np.ndarray, boxes_b: np.ndarray, scores_b: np.ndarray
) -> tuple[float, float, int, int]:
    """Greedy one-to-one pairing by box distance, highest scores first.

    Returns the largest box and score differences of the pairs, the number of boxes left
    unpaired, and how many of those are not near-ties: a box found on one side only is an NMS
    near-tie when the other side has a box whose score is within :data:`SCORE_TOLERANCE` of its
    own (NMS ranks by score; two scores equal to float rounding may rank either way and
    suppress different neighbours).
    """
    box_diff = score_diff = 0.0
    free = list(range(len(boxes_b)))
    lonely_a: list[int] = []
    for i in np.argsort(-scores_a, kind="stable"):
        dist = [float(np.abs(boxes_a[i] - boxes_b[j]).max()) for j in free]
        k = int(np.argmin(dist)) if dist else -1
        if k < 0 or dist[k] > 1.0:  # no box of the other side within a pixel: not the same box
            lonely_a.append(int(i))
            continue
        j = free.pop(k)
        box_diff = max(box_diff, dist[k])
        score_diff = max(score_diff, abs(float(scores_a[i]) - float(scores_b[j])))

    def tie(score: float, others: np.ndarray) -> bool:
        return bool(others.size) and float(np.abs(others - score).min()) <= SCORE_TOLERANCE

    not_ties = sum(not tie(float(scores_a[i]), scores_b) for i in lonely_a) + sum(
        not tie(float(scores_b[j]), scores_a) for j in free
    )
    return box_diff, score_diff, len(lonely_a) + len(free), not_ties


def detector_parity(
    source: Path,
    onnx_path: Path,
    images: Sequence[np.ndarray],
    *,
    imgsz: int,
    conf: float,
    iou: float,
    seed: int,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """How closely the ONNX detector reproduces the ``.pt`` one, and whether within tolerance.

    Raw: ``n_raw`` seeded random inputs ``(B, 3, imgsz, imgsz)`` in [0, 1] through both
    networks; every anchor's box (input pixels) and score compared. Boxes: Ultralytics'
    ``predict`` through both files on ``images`` (grey uint8 arrays, as ``fracdet predict``
    passes them) with the same ``imgsz``, ``conf`` and ``iou``; boxes paired one to one
    (:func:`pair_boxes`). Passed: raw and paired differences within tolerance, and every box
    found on one side only an NMS near-tie.
    """
    from fracdet.det.inference import result_boxes

    pt_model = load_detector(source, trust_pickle=trust_pickle)
    with _ultralytics_quiet():
        onnx_model = load_detector(onnx_path, allow_onnx=True)
    rng = np.random.default_rng(seed)
    batch = rng.random((2, 3, imgsz, imgsz), dtype=np.float32)
    torch_out, onnx_out = _raw_outputs(pt_model, onnx_path, batch)
    if torch_out.shape != onnx_out.shape:
        raise ConfigError(
            f"the ONNX head's output has shape {onnx_out.shape}, PyTorch's {torch_out.shape}",
            onnx_path,
        )
    raw_box = float(np.abs(torch_out[:, :4] - onnx_out[:, :4]).max())
    raw_score = float(np.abs(torch_out[:, 4:] - onnx_out[:, 4:]).max())
    options = {
        "imgsz": imgsz,
        "conf": conf,
        "iou": iou,
        "rect": False,
        "device": "cpu",
        "verbose": False,
    }
    box_diff = score_diff = 0.0
    n_boxes = unpaired = not_ties = 0
    if images:
        with ultralytics_offline(), _ultralytics_quiet():
            pt_results = pt_model.predict(list(images), **options)
            onnx_results = onnx_model.predict(list(images), **options)
        for a, b in zip(pt_results, onnx_results, strict=True):
            boxes_a, scores_a = result_boxes(a)
            boxes_b, scores_b = result_boxes(b)
            arr = [
                np.array([[x.x1, x.y1, x.x2, x.y2] for x in boxes]).reshape(-1, 4)
                for boxes in (boxes_a, boxes_b)
            ]
            d_box, d_score, missed, unexplained = pair_boxes(
                arr[0], np.array(scores_a), arr[1], np.array(scores_b)
            )
            box_diff, score_diff = max(box_diff, d_box), max(score_diff, d_score)
            n_boxes += len(boxes_a)
            unpaired += missed
            not_ties += unexplained
    passed = (
        raw_box <= BOX_TOLERANCE_PX
        and raw_score <= SCORE_TOLERANCE
        and box_diff <= BOX_TOLERANCE_PX
        and score_diff <= SCORE_TOLERANCE
        and not_ties == 0
    )
    return {
        "raw_inputs": int(batch.shape[0]),
        "raw_shape": list(torch_out.shape),
        "raw_box_max_abs_diff_px": raw_box,
        "raw_score_max_abs_diff": raw_score,
        "images": len(images),
        "boxes": n_boxes,
        "box_max_abs_diff_px": box_diff,
        "score_max_abs_diff": score_diff,
        "unpaired_boxes": unpaired,
        "unpaired_not_near_ties": not_ties,
        "predict_options": {"imgsz": imgsz, "conf": conf, "iou": iou},
        "tolerance": {"box_px": BOX_TOLERANCE_PX, "score": SCORE_TOLERANCE},
        "passed": passed,
    }
