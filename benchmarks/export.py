"""Benchmark ONNX (onnxruntime, CPU) against PyTorch for the models ``fracdet export`` writes.

What: build random-init classifiers (default ``resnet18`` and ``tf_efficientnet_lite0`` at
224 px, binary) and an untrained YOLOv8n (from ``yolov8n.yaml``, one class), export each
with :func:`fracdet.export.export_model` (which also checks parity and records it), then time
on the same inputs:

* classifiers: a batch of ``--batch`` grey images through the PyTorch wrapper (fp32,
  ``no_grad``) and through :class:`fracdet.cls.onnx.OnnxClassifier` (what ``predict`` and
  ``eval-cls`` run for a ``.onnx``), both with PyTorch's thread count;
* the detector: Ultralytics ``predict`` over ``--det-images`` grey images at ``--det-imgsz``
  through the ``.pt`` and through the ``.onnx`` (letterbox, network, NMS: what ``fracdet
  predict`` runs), and the bare network on one letterboxed batch (PyTorch forward vs an
  onnxruntime session).

Why: the issue asks what ONNX buys on this CPU, as a ratio (ONNX images/s over PyTorch
images/s; above 1 means ONNX is faster). Machines are noisy: every variant is warmed up once,
then measured over ``--rounds`` rounds in alternating order; the table reports medians of the
throughputs and the median of the per-round ratios.

Run: ``.venv/bin/python benchmarks/export.py [--backbones a,b] [--size PX] [--batch B]
[--det-imgsz PX] [--det-images N] [--rounds R] [--workdir DIR] [--json PATH] [--check]``.
There is no throughput target: ``--check`` fails only when an export misses its parity
tolerance (which raises before any timing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _bench import add_run_options, print_rows, run_and_report  # noqa: E402 - sibling helper; scripts run as `python benchmarks/x.py`
from predict import machine_info  # noqa: E402 - the same machine description as the predict benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Results:
    rounds: int
    machine: dict[str, str]
    shapes: dict[str, str] = field(default_factory=dict)  # model -> what one call processes
    per_call: dict[str, int] = field(default_factory=dict)  # model -> images per call
    seconds: dict[str, list[float]] = field(default_factory=dict)  # "model/engine" -> rounds
    parity: dict[str, str] = field(default_factory=dict)  # model -> the export's parity line

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, rounds in self.seconds.items():
            model = key.split("/")[0]
            out[f"{key} images/s"] = self.per_call[model] / statistics.median(rounds)
        for model in self.per_call:
            pt, ort = self.seconds[f"{model}/pytorch"], self.seconds[f"{model}/onnxruntime"]
            out[f"{model} onnx/pytorch"] = statistics.median(
                [a / b for a, b in zip(pt, ort, strict=True)]
            )
        return out

    def passed(self) -> bool:
        return True  # an export outside its tolerance raises before any number is written


def _time(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _measure(results: Results, model: str, variants: dict[str, Callable[[], object]]) -> None:
    for call in variants.values():
        call()  # warm-up
    names = list(variants)
    for round_ in range(results.rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for engine in order:
            results.seconds.setdefault(f"{model}/{engine}", []).append(_time(variants[engine]))


def _classifier(args: argparse.Namespace, work: Path, backbone: str, results: Results) -> None:
    import torch

    from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
    from fracdet.cls.model import create_classifier
    from fracdet.cls.onnx import OnnxClassifier
    from fracdet.export import ExportConfig, export_model

    torch.manual_seed(0)
    model = create_classifier(backbone, num_outputs=1).eval()
    meta = ClassifierMeta(
        backbone=backbone,
        class_names=("not_fractured", "fractured"),
        image_size=args.size,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
    )
    run = work / backbone
    save_classifier(model, meta, run / "best.safetensors")
    summary = export_model(ExportConfig(run, n_random=4))
    results.parity[backbone] = f"logits max |diff| {summary.parity['max_abs_diff']:.1e}"
    onnx = OnnxClassifier(summary.onnx)
    x = torch.rand(args.batch, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))

    def pytorch() -> None:
        with torch.no_grad():
            model(x)

    results.per_call[backbone] = args.batch
    results.shapes[backbone] = f"batch {args.batch} x 1 x {args.size} x {args.size}"
    _measure(results, backbone, {"pytorch": pytorch, "onnxruntime": lambda: onnx(x)})


def _detector(args: argparse.Namespace, work: Path, results: Results) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch
    import ultralytics
    import yaml
    from ultralytics import YOLO

    from fracdet.det.model import load_detector, ultralytics_offline
    from fracdet.export import ExportConfig, export_model

    doc = yaml.safe_load(
        (Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text()
    )
    doc["nc"] = 1
    (work / "yolov8n.yaml").write_text(yaml.safe_dump(doc))
    torch.manual_seed(0)
    YOLO(str(work / "yolov8n.yaml")).save(str(work / "yolov8n.pt"))
    summary = export_model(
        ExportConfig(work / "yolov8n.pt", imgsz=args.det_imgsz, n_random=4, det_conf=0.01)
    )
    p = summary.parity
    results.parity["yolov8n"] = (
        f"raw boxes max |diff| {p['raw_box_max_abs_diff_px']:.1e} px, "
        f"scores {p['raw_score_max_abs_diff']:.1e}"
    )
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, size=(args.det_imgsz, args.det_imgsz * 3 // 4), dtype=np.uint8)
        for _ in range(args.det_images)
    ]
    pt = load_detector(work / "yolov8n.pt")
    onnx = load_detector(summary.onnx, allow_onnx=True)
    options = {"imgsz": args.det_imgsz, "conf": 0.25, "device": "cpu", "verbose": False}

    def predict(model) -> Callable[[], object]:
        def call() -> None:
            with ultralytics_offline():
                for _ in model.predict(images, stream=True, **options):
                    pass

        return call

    results.per_call["yolov8n-predict"] = len(images)
    results.shapes["yolov8n-predict"] = f"{len(images)} grey images, Ultralytics predict"
    _measure(results, "yolov8n-predict", {"pytorch": predict(pt), "onnxruntime": predict(onnx)})
    # the bare network on one batch: no letterbox, no NMS
    net = pt.model.eval().float()
    x = torch.rand(args.batch, 3, args.det_imgsz, args.det_imgsz)
    options_ort = ort.SessionOptions()
    options_ort.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(
        str(summary.onnx), options_ort, providers=["CPUExecutionProvider"]
    )
    feed = {session.get_inputs()[0].name: x.numpy()}

    def forward() -> None:
        with torch.no_grad():
            net(x)

    results.per_call["yolov8n-network"] = args.batch
    results.shapes["yolov8n-network"] = f"batch {args.batch} x 3 x {args.det_imgsz}^2"
    _measure(
        results,
        "yolov8n-network",
        {"pytorch": forward, "onnxruntime": lambda: session.run(None, feed)},
    )


def benchmark(args: argparse.Namespace, work: Path) -> Results:
    from fracdet.log import setup_logging

    setup_logging(quiet=True)
    results = Results(args.rounds, machine_info())
    for backbone in args.backbones.split(","):
        _classifier(args, work, backbone, results)
    _detector(args, work, results)
    return results


def print_table(results: Results) -> None:
    summary = results.summary()
    rows = []
    for model in results.per_call:
        name = model.split("-")[0]
        rows.append(
            (
                model,
                results.shapes[model],
                f"{summary[f'{model}/pytorch images/s']:.1f}",
                f"{summary[f'{model}/onnxruntime images/s']:.1f}",
                f"{summary[f'{model} onnx/pytorch']:.2f}",
                results.parity.get(name, ""),
            )
        )
    print(f"median of {results.rounds} rounds; machine: {results.machine}")
    print_rows(
        ("model", "per call", "PyTorch img/s", "ONNX img/s", "ONNX / PyTorch", "export parity"),
        rows,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbones", default="resnet18,tf_efficientnet_lite0", help="timm classifiers"
    )
    parser.add_argument("--size", type=int, default=224, help="classifier input (224 px)")
    parser.add_argument("--batch", type=int, default=8, help="images per classifier call (8)")
    parser.add_argument("--det-imgsz", type=int, default=320, help="detector input (320 px)")
    parser.add_argument("--det-images", type=int, default=16, help="detector images (16)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (5)")
    add_run_options(parser)
    args = parser.parse_args()
    return run_and_report(args, "fracdet-bench-export-", benchmark, print_table, targets={})


if __name__ == "__main__":
    sys.exit(main())
