"""Benchmark ``fracdet predict`` (both tracks) against bare Ultralytics + bare timm on the same
images.

What: generate phantom radiographs (default 200 at 384 px), save an untrained YOLOv8n (from
``yolov8n.yaml``) as a ``.pt`` and an untrained resnet18 classifier checkpoint at 224 px, then
time, with the same batch size, detector image size and classifier precision,

* ``predict_folder`` with both tracks (one decode per image in DataLoader workers, batched
  classifier forward, batched detector call, CSV/JSON written batch by batch),
* the baseline: bare Ultralytics ``YOLO(pt).predict("paths.txt", batch=B, imgsz=..., stream=True)``
  over the paths (a .txt listing them: Ultralytics ignores ``batch`` for a Python list of
  paths), plus a bare timm loop over the same images (PIL decode, resize, stack, forward),
  both in one run; model loading is counted on both sides,

and the peak memory of a predict run in a fresh interpreter over the images and over 10x
as many (the same files hard-linked 10 times into one folder).

Why: predict must cost no more than doing the two tracks by hand (target: overhead at most
15%), and its memory must not grow with the number of images (it streams).

Machines are noisy, so both variants are warmed up once, then measured over several rounds
in alternating order; the table reports medians and the median of the per-round ratios.

Run: ``.venv/bin/python benchmarks/predict.py [--count N] [--size PX] [--rounds R]
[--batch-size B] [--workers W] [--det-imgsz PX] [--cls-size PX] [--rss-multiplier M]
[--workdir DIR] [--json PATH] [--check]``. Exits 1 only when ``--check`` is given and a
target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _bench import add_run_options, print_rows, run_and_report  # noqa: E402 - sibling helper; scripts run as `python benchmarks/x.py`

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OVERHEAD_TARGET = 0.15
RSS_GROWTH_TARGET = 1.25  # peak RSS at 10x the images over peak RSS at 1x: "about the same"

# Peak-memory probes: fresh interpreters that import what they need and run once, then print
# their own high-water mark (VmHWM: the peak of this process image only; ru_maxrss would
# include the benchmark process it was forked from).
_HWM = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VmHWM_kB", line.split()[1])
"""
_PREDICT_SNIPPET = (
    """
import sys
from pathlib import Path
from fracdet.log import setup_logging
from fracdet.predict import PredictConfig, predict_folder
setup_logging(quiet=True)
folder, out, cls, det, batch, workers, imgsz = sys.argv[1:8]
summary = predict_folder(PredictConfig(folder=Path(folder), output=Path(out), cls=Path(cls),
    det=Path(det), batch_size=int(batch), workers=int(workers), det_imgsz=int(imgsz),
    device="cpu", overwrite=True))
assert summary.n_ok > 0, summary
"""
    + _HWM
)
_BASELINE_SNIPPET = (
    """
import argparse, importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("bench_predict", sys.argv[1])
bench = sys.modules["bench_predict"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
folder, cls, det, batch, imgsz, size, precision = sys.argv[2:9]
args = argparse.Namespace(batch_size=int(batch), det_imgsz=int(imgsz), cls_size=int(size))
bench.baseline(sorted(Path(folder).rglob("*.jpg")), Path(cls), Path(det), args, precision, {})
"""
    + _HWM
)


@dataclass
class Results:
    """Everything measured in one run; written as JSON with ``--json``."""

    count: int
    size: int
    rounds: int
    batch_size: int
    workers: int
    det_imgsz: int
    cls_size: int
    precision: str = ""
    generate_s: float = 0.0
    predict_s: list[float] = field(default_factory=list)
    predict_loop_s: list[float] = field(default_factory=list)
    baseline_s: list[float] = field(default_factory=list)
    baseline_det_s: list[float] = field(default_factory=list)
    baseline_cls_s: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    rss: dict[str, dict[str, float]] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Medians of the timings and of the per-round ratios, and throughput."""
        predict, baseline = statistics.median(self.predict_s), statistics.median(self.baseline_s)
        small, large = self.rss.get("1x", {}), self.rss.get("10x", {})
        growth_main = large.get("main_mb", 0.0) / small["main_mb"] if small.get("main_mb") else 0.0
        growth_tree = large.get("tree_mb", 0.0) / small["tree_mb"] if small.get("tree_mb") else 0.0
        return {
            "predict_s": predict,
            "predict_loop_s": statistics.median(self.predict_loop_s),
            "baseline_s": baseline,
            "baseline_det_s": statistics.median(self.baseline_det_s),
            "baseline_cls_s": statistics.median(self.baseline_cls_s),
            "ratio": statistics.median(self.ratio),
            "overhead": statistics.median(self.ratio) - 1.0,
            "predict_images_per_s": self.count / predict,
            "baseline_images_per_s": self.count / baseline,
            "rss_growth_main": growth_main,
            "rss_growth_tree": growth_tree,
            "rss_growth": max(growth_main, growth_tree),
        }

    def passed(self) -> bool:
        s = self.summary()
        return s["overhead"] <= OVERHEAD_TARGET and (
            not self.rss or s["rss_growth"] <= RSS_GROWTH_TARGET
        )


def machine_info() -> dict[str, str]:
    """Cores, CPU model (and its bf16 support: it decides the classifier's precision), Python."""
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (
                platform.processor() or platform.machine()
            ):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    import torch

    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "bf16": "amx" if "amx_bf16" in flags else "avx512" if "avx512_bf16" in flags else "no",
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def make_checkpoints(work: Path, cls_size: int) -> tuple[Path, Path]:
    """An untrained resnet18 classifier checkpoint and an untrained YOLOv8n saved as .pt."""
    from ultralytics import YOLO

    from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
    from fracdet.cls.model import create_classifier

    model = create_classifier("resnet18")
    meta = ClassifierMeta(
        backbone="resnet18",
        class_names=("not_fractured", "fractured"),
        image_size=cls_size,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
    )
    save_classifier(model, meta, work / "cls" / "best.safetensors")
    detector = YOLO("yolov8n.yaml")  # built from Ultralytics' bundled yaml: nothing is downloaded
    detector.save(str(work / "det_untrained.pt"))
    return work / "cls", work / "det_untrained.pt"


def baseline(
    paths: list[Path],
    cls_dir: Path,
    det_pt: Path,
    args: argparse.Namespace,
    precision: str,
    split: dict[str, float],
) -> None:
    """The two tracks by hand: what a user would write without fracdet."""
    import numpy as np
    import timm
    import torch
    from PIL import Image
    from safetensors.torch import load_file
    from ultralytics import YOLO

    start = time.perf_counter()
    # A .txt list of paths, because Ultralytics honours `batch` only for file sources: a Python
    # list of paths is opened whole and run as one batch (200 images: 5.1 GB peak, see README).
    listing = Path(tempfile.mkdtemp(prefix="bench-predict-list-")) / "paths.txt"
    listing.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    detector = YOLO(str(det_pt))
    for _ in detector.predict(
        str(listing),
        batch=args.batch_size,
        imgsz=args.det_imgsz,
        conf=0.25,
        iou=0.7,
        stream=True,
        verbose=False,
        device="cpu",
    ):
        pass
    shutil.rmtree(listing.parent, ignore_errors=True)
    split["det"] = time.perf_counter() - start

    start = time.perf_counter()
    model = timm.create_model("resnet18", num_classes=1)
    model.load_state_dict(load_file(str(cls_dir / "best.safetensors")))
    model.eval()
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else torch.autocast("cpu", enabled=False)
    )
    size = args.cls_size
    for i in range(0, len(paths), args.batch_size):
        arrays = []
        for path in paths[i : i + args.batch_size]:
            with Image.open(path) as img:
                arrays.append(
                    np.asarray(
                        img.convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32
                    )
                    / 255.0
                )
        batch = torch.from_numpy(np.stack(arrays))[:, None].expand(-1, 3, -1, -1)
        with torch.no_grad(), autocast:
            model((batch - mean) / std).float()
    split["cls"] = time.perf_counter() - start


def peak_memory(cmd: list[str]) -> dict[str, float]:
    """Peak memory of one run in MB: the main process's VmHWM, and the whole process tree's PSS.

    DataLoader workers are separate processes forked from the main one; PSS (proportional set
    size) counts the pages they share with it once, so the tree total is not inflated. It is
    sampled every 50 ms, so a very short spike can be missed.
    """
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()
    peak = {"tree": 0.0}

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
            while not done.is_set():
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(
                        psutil.Error
                    ):  # a worker may exit between listing and reading
                        total += p.memory_full_info().pss
                peak["tree"] = max(peak["tree"], total / 2**20)
                time.sleep(0.05)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join(timeout=2)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {stderr[-2000:]}")
    hwm = next(
        (int(line.split()[1]) for line in stdout.splitlines() if line.startswith("VmHWM_kB")), 0
    )
    return {"main_mb": hwm / 1024, "tree_mb": peak["tree"]}


def benchmark(args: argparse.Namespace, work: Path) -> Results:
    import torch

    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.log import setup_logging
    from fracdet.predict import PredictConfig, predict_folder
    from fracdet.runtime import resolve_precision

    setup_logging(quiet=True)
    precision = resolve_precision("auto", torch.device("cpu"))
    results = Results(
        count=args.count,
        size=args.size,
        rounds=args.rounds,
        batch_size=args.batch_size,
        workers=args.workers,
        det_imgsz=args.det_imgsz,
        cls_size=args.cls_size,
        precision=precision,
        machine=machine_info(),
    )
    print(f"generating {args.count} phantoms at {args.size} px ...", flush=True)
    results.generate_s = timed(
        lambda: generate_phantoms(
            PhantomConfig(
                output=work / "phantoms", count=args.count, size=args.size, seed=0, overwrite=True
            )
        )
    )
    folder = work / "phantoms" / "images"
    paths = sorted(folder.rglob("*.jpg"))
    cls_dir, det_pt = make_checkpoints(work, args.cls_size)
    loop_s: list[float] = []
    split: dict[str, float] = {}

    def run_predict() -> None:
        cfg = PredictConfig(
            folder=folder,
            output=work / "out",
            cls=cls_dir,
            det=det_pt,
            batch_size=args.batch_size,
            det_imgsz=args.det_imgsz,
            workers=args.workers,
            device="cpu",
            precision=precision,
            overwrite=True,
        )
        summary = predict_folder(cfg)
        assert summary.n_ok == len(paths), summary
        loop_s.append(summary.seconds)

    variants: dict[str, Callable[[], None]] = {
        "predict": run_predict,
        "baseline": lambda: baseline(paths, cls_dir, det_pt, args, precision, split),
    }
    print("warm-up ...", flush=True)
    for func in variants.values():
        func()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(args.rounds):
        order = (
            list(variants) if i % 2 == 0 else list(reversed(variants))
        )  # alternate who goes first
        for name in order:
            times[name].append(timed(variants[name]))
            if name == "baseline":
                results.baseline_det_s.append(split["det"])
                results.baseline_cls_s.append(split["cls"])
        print(
            f"round {i + 1}/{args.rounds} ({' > '.join(order)}): "
            f"predict {times['predict'][-1]:.2f} s,"
            f" baseline {times['baseline'][-1]:.2f} s "
            f"(det {split['det']:.2f} + cls {split['cls']:.2f}),"
            f" ratio {times['predict'][-1] / times['baseline'][-1]:.3f}",
            flush=True,
        )
    results.predict_s, results.baseline_s = times["predict"], times["baseline"]
    results.predict_loop_s = loop_s[1:]  # without the warm-up
    results.ratio = [p / b for p, b in zip(results.predict_s, results.baseline_s, strict=True)]

    if args.rss_multiplier > 0:
        many = work / "many"
        many.mkdir()
        for k in range(args.rss_multiplier):
            for path in paths:
                os.link(path, many / f"{k:02d}_{path.parent.name}_{path.name}")
        for label, source, n in (
            ("1x", folder, len(paths)),
            ("10x", many, len(paths) * args.rss_multiplier),
        ):
            print(f"peak memory of predict, {n} images ...", flush=True)
            cmd = [
                sys.executable,
                "-c",
                _PREDICT_SNIPPET,
                str(source),
                str(work / "out_rss"),
                str(cls_dir),
                str(det_pt),
                str(args.batch_size),
                str(args.workers),
                str(args.det_imgsz),
            ]
            start = time.perf_counter()
            results.rss[label] = {
                **peak_memory(cmd),
                "images": n,
                "seconds": time.perf_counter() - start,
            }
        print(f"peak memory of the baseline, {len(paths)} images ...", flush=True)
        cmd = [
            sys.executable,
            "-c",
            _BASELINE_SNIPPET,
            str(Path(__file__).resolve()),
            str(folder),
            str(cls_dir),
            str(det_pt),
            str(args.batch_size),
            str(args.det_imgsz),
            str(args.cls_size),
            precision,
        ]
        results.rss["baseline"] = {**peak_memory(cmd), "images": len(paths)}
    return results


def print_table(results: Results) -> None:
    s = results.summary()
    m = results.machine
    print()
    print(
        f"{results.count} phantoms at {results.size} px, batch {results.batch_size}, "
        f"{results.workers} workers, detector imgsz "
        f"{results.det_imgsz}, classifier {results.cls_size} px in {results.precision}; "
        f"{m['cores']} cores, {m['cpu']}; "
        f"median of {results.rounds} rounds"
    )
    ok = "ok" if s["overhead"] <= OVERHEAD_TARGET else "MISSED"
    rows = [
        (
            "baseline: Ultralytics + timm by hand",
            f"{s['baseline_s']:.2f} s",
            f"{s['baseline_images_per_s']:.1f} img/s",
            "",
            "",
        ),
        ("  of which Ultralytics predict", f"{s['baseline_det_s']:.2f} s", "", "", ""),
        ("  of which timm decode + forward", f"{s['baseline_cls_s']:.2f} s", "", "", ""),
        (
            "predict_folder (both tracks)",
            f"{s['predict_s']:.2f} s",
            f"{s['predict_images_per_s']:.1f} img/s",
            "",
            "",
        ),
        ("  of which the image loop", f"{s['predict_loop_s']:.2f} s", "", "", ""),
        (
            "overhead vs baseline",
            f"{s['overhead'] * 100:+.1f} %",
            "",
            f"<= {OVERHEAD_TARGET * 100:.0f} %",
            ok,
        ),
    ]
    for key, rss in results.rss.items():
        what = "baseline" if key == "baseline" else "predict"
        rows.append(
            (
                f"peak memory, {what}, {rss['images']:.0f} images",
                f"{rss['main_mb']:.0f} MB main",
                f"{rss['tree_mb']:.0f} MB tree",
                "",
                "",
            )
        )
    if results.rss:
        okr = "ok" if s["rss_growth"] <= RSS_GROWTH_TARGET else "MISSED"
        rows.append(
            (
                "peak memory growth 10x / 1x",
                f"{s['rss_growth_main']:.2f}x main",
                f"{s['rss_growth_tree']:.2f}x tree",
                f"<= {RSS_GROWTH_TARGET:.2f}x",
                okr,
            )
        )
    header = ("measure", "value", "", "target", "")
    print_rows(header, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="phantom images (200)")
    parser.add_argument("--size", type=int, default=384, help="long side in pixels (384)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (3)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per batch, both sides (16)"
    )
    parser.add_argument("--workers", type=int, default=2, help="predict's DataLoader workers (2)")
    parser.add_argument("--det-imgsz", type=int, default=640, help="detector image size (640)")
    parser.add_argument("--cls-size", type=int, default=224, help="classifier input size (224)")
    parser.add_argument(
        "--rss-multiplier",
        type=int,
        default=10,
        help="peak memory also over this many links per image (10; 0: skip memory)",
    )
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.count < 1 or args.batch_size < 1:
        parser.error("--rounds, --count and --batch-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    return run_and_report(
        args,
        "bench-predict-",
        benchmark,
        print_table,
        {"overhead_max": OVERHEAD_TARGET, "rss_growth_max": RSS_GROWTH_TARGET},
    )


if __name__ == "__main__":
    sys.exit(main())
