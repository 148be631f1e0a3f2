"""Benchmark ``fracdet audit`` against its compute floor and a per-image loop, in fp32 and bf16.

What: generate phantom radiographs (default 32 at 256 px, half fractured), convert them, save
a random-init timm resnet18 classifier checkpoint at 224 px, then time, on the same images and
with the same settings (ℓ∞ PGD ε=4/255, 10 steps; Saliency, DeepLIFT, Integrated Gradients
with ``--ig-steps`` steps and Grad-CAM, on clean and on PGD inputs; batch 16; no detector):

* (a) ``run_audit`` end to end: loading the checkpoint and building the explainers, decoding
  (DataLoader workers), the attack, the attributions, the metrics, saving per-image rows and
  float16 maps, then the summary, the figures and the report;
* (b) the compute floor: the same ``fracdet.robust.attacks.attack`` and ``Explainer.explain``
  calls (from ``create_explainer``; maps and IG's delta), batched, on the same already-decoded
  tensors, nothing else;
* (c) a naive loop: the calls of (b), one image at a time, over the first ``--loop-count`` images
  (compared per image: it is the slowest variant);

and (a) and (b) again in bf16 (autocast + channels-last, what ``precision: bf16`` does), with the
change the lower precision makes to coverage@25 (mean over images) and to PGD accuracy. Then the
achieved GFLOP/s of (b) (FLOPs of one forward and one input-gradient backward counted with
``torch.utils.flop_counter.FlopCounterMode``, times the passes (b) makes) against the machine's
measured GEMM peak (a large ``torch.mm`` in fp32 and bf16), and the peak memory of a cheap
audit (Saliency only, 1 PGD step, resnet10t at 64 px) over 200 and over 2,000 images, each in
a fresh interpreter.

Why: an audit is compute-bound; bookkeeping, metrics, saving and figures must be nearly free
(target: (a) at most 1.1x (b) in fp32), and shared passes let (a) go below (b). bf16 becomes
the default only if it is at least 2.5x faster and moves coverage and PGD accuracy by less
than 1 percentage point. Memory must be bounded by the batch, not the dataset.

Machines are noisy: every variant is warmed up once on a few images, then measured over
several rounds in rotating order; the table reports medians and the median of per-round ratios.

Run: ``.venv/bin/python benchmarks/audit.py [--count N] [--ig-steps K] [--loop-count N] [--rounds R]
[--batch-size B] [--workers W] [--no-bf16] [--rss-count N] [--rss-multiplier M] [--cls CKPT]
[--dataset DIR] [--split NAME]
[--workdir DIR] [--json PATH] [--check]``. Exits 1 only when ``--check`` is given and a target
is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _bench import add_run_options, print_rows, run_and_report  # noqa: E402 - sibling helper; scripts run as `python benchmarks/x.py`
from predict import machine_info  # noqa: E402 - the same machine description as the predict benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OVERHEAD_TARGET = 1.10  # (a) / (b) in fp32
BF16_SPEEDUP_TARGET = 2.5  # fp32 (a) / bf16 (a), to make bf16 the default
PRECISION_TOLERANCE_PP = 1.0  # coverage@25 and PGD accuracy, percentage points
RSS_GROWTH_TARGET = 1.25  # peak memory at 2,000 images over 200: "about the same"
METHODS = ("saliency", "deeplift", "integrated_gradients", "gradcam")

# A fresh interpreter audits a dataset once, then prints its own high-water mark (VmHWM: the
# peak of this process alone; ru_maxrss of a child would include the benchmark it forked from).
_RSS_SNIPPET = """
import sys
from pathlib import Path
from fracdet.audit import AuditConfig, run_audit
from fracdet.log import setup_logging
setup_logging(quiet=True)
dataset, cls, out, count, batch = sys.argv[1:6]
run_audit(AuditConfig(
    dataset=Path(dataset), classifiers=(Path(cls),), split="all", max_images=int(count),
    methods=("saliency",), steps=1, batch_size=int(batch), workers=0, device="cpu",
    precision="fp32", output=Path(out), overwrite=True,
))
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VmHWM_kB", line.split()[1])
"""


@dataclass
class Results:
    """Everything measured in one run; written as JSON with ``--json``."""

    count: int
    image_size: int
    backbone: str
    steps: int
    ig_steps: int
    batch_size: int
    workers: int
    rounds: int
    loop_count: int = 0
    data: str = "phantoms"
    detector: str = "none"
    checkpoint: str = "random init"
    times: dict[str, list[float]] = field(default_factory=dict)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)
    gemm_gflops: dict[str, float] = field(default_factory=dict)
    rss: dict[str, dict[str, float]] = field(default_factory=dict)
    load: dict[str, str] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)

    def images(self, variant: str) -> int:
        return self.loop_count if variant == "loop" else self.count

    def ratio(self, top: str, bottom: str) -> float:
        """Median of the per-round ratios of seconds per image, ``top / bottom``."""
        scale = self.images(bottom) / self.images(top)
        return statistics.median(
            t / b * scale for t, b in zip(self.times[top], self.times[bottom], strict=True)
        )

    def summary(self) -> dict[str, float]:
        s: dict[str, float] = {
            f"{name}_s": statistics.median(values) for name, values in self.times.items()
        }
        s |= {f"{name}_images_per_s": self.images(name) / s[f"{name}_s"] for name in self.times}
        s["audit_vs_floor"] = self.ratio("audit", "floor")
        s["loop_vs_floor"] = self.ratio("loop", "floor")
        s["floor_gflops"] = self.flops.get("per_image", 0.0) * self.count / s["floor_s"] / 1e9
        if "audit_bf16" in self.times:
            s["audit_bf16_vs_floor_bf16"] = self.ratio("audit_bf16", "floor_bf16")
            s["bf16_speedup"] = self.ratio("audit", "audit_bf16")
            s["floor_bf16_speedup"] = self.ratio("floor", "floor_bf16")
            s["floor_bf16_gflops"] = (
                self.flops.get("per_image", 0.0) * self.count / s["floor_bf16_s"] / 1e9
            )
            # the rule looks at PGD accuracy and coverage@25; clean accuracy is shown,
            # not judged
            s["max_quality_change_pp"] = max(
                (abs(q["change_pp"]) for k, q in self.quality.items() if k != "clean_accuracy"),
                default=0.0,
            )
        small, large = self.rss.get("small", {}), self.rss.get("large", {})
        if small.get("main_mb") and large.get("main_mb"):
            s["rss_growth"] = large["main_mb"] / small["main_mb"]
        return s

    def bf16_qualifies(self) -> bool:
        """The issue's rule for making bf16 the default: >= 2.5x faster and < 1 pp change."""
        s = self.summary()
        return (
            "bf16_speedup" in s
            and s["bf16_speedup"] >= BF16_SPEEDUP_TARGET
            and s["max_quality_change_pp"] < PRECISION_TOLERANCE_PP
        )

    def passed(self) -> bool:
        s = self.summary()
        return (
            s["audit_vs_floor"] <= OVERHEAD_TARGET and s.get("rss_growth", 1.0) <= RSS_GROWTH_TARGET
        )


def uptime_load() -> str:
    """The 1/5/15-minute load averages: the machine is shared, so the table says how busy it was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def make_dataset(root: Path, count: int, size: int) -> Path:
    """``count`` phantoms (half fractured) as ``fracdet convert`` writes them (manifest, COCO)."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.data.convert import ConvertConfig, convert

    source = generate_phantoms(
        PhantomConfig(root / "phantoms", count=count, size=size, seed=0, prevalence=0.5, workers=2)
    )
    return convert(ConvertConfig(source=source, output=root / "dataset", seed=0)).output


def make_checkpoint(folder: Path, backbone: str, image_size: int) -> Path:
    """A random-init classifier checkpoint (seeded), as ``fracdet train-cls`` would save it."""
    import torch

    from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
    from fracdet.cls.model import create_classifier

    torch.manual_seed(0)
    model = create_classifier(backbone)
    meta = ClassifierMeta(
        backbone=backbone,
        class_names=("not_fractured", "fractured"),
        image_size=image_size,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
    )
    save_classifier(model, meta, folder / "best.safetensors")
    return folder


def audit_config(
    args: argparse.Namespace, dataset: Path, cls: Path, out: Path, precision: str, count: int
):
    from fracdet.audit import AuditConfig

    return AuditConfig(
        dataset=dataset,
        classifiers=(cls,),
        split=args.split,
        max_images=count,
        output=out,
        steps=args.steps,
        ig_steps=args.ig_steps,
        methods=METHODS,
        batch_size=args.batch_size,
        workers=args.workers,
        device="cpu",
        precision=precision,
        overwrite=True,
    )


@dataclass
class Floor:
    """What (b) and (c) run: the model, the explainers and the attack, and the decoded batches."""

    model: Any
    explainers: dict[str, Any]
    attack: Any
    precision: str
    batches: list[tuple[Any, Any]]
    seed: int
    image_size: int
    backbone: str
    seconds: dict[str, float] = field(default_factory=dict)  # per call kind, over the last run

    def _calls(self, images, labels, generator) -> None:
        import torch

        from fracdet.robust.attacks import attack
        from fracdet.runtime import autocast

        device = torch.device("cpu")
        start = time.perf_counter()
        with autocast(device, self.precision):
            adv = attack(self.model, images, labels, self.attack, generator=generator)
        self.seconds["attack"] = self.seconds.get("attack", 0.0) + time.perf_counter() - start
        targets = [1] * len(images)  # the audit's default: explain the fracture class
        for code, explainer in self.explainers.items():
            start = time.perf_counter()
            for inputs in (images, adv):
                with autocast(device, self.precision):
                    explainer.explain(inputs, targets)
            self.seconds[f"attr:{code}"] = (
                self.seconds.get(f"attr:{code}", 0.0) + time.perf_counter() - start
            )

    def batched(self, limit: int | None = None) -> None:
        """(b): every batch as the audit cuts them, attack starts seeded as the audit does."""
        import torch

        self.seconds = {}
        for chunk, (images, labels) in enumerate(self.batches[:limit]):
            self._calls(
                images, labels, torch.Generator().manual_seed(self.seed * 1_000_003 + chunk)
            )

    def per_image(self, limit: int | None = None) -> None:
        """(c): the same calls, one image at a time."""
        import torch

        self.seconds = {}
        k = 0
        for images, labels in self.batches:
            for i in range(len(images)):
                if limit is not None and k >= limit:
                    return
                self._calls(
                    images[i : i + 1],
                    labels[i : i + 1],
                    torch.Generator().manual_seed(self.seed * 1_000_003 + k),
                )
                k += 1


def make_floor(cfg, precision: str) -> Floor:
    """Load and decode what the audit would, outside any timing: the floor counts compute only."""
    import torch

    from fracdet.audit.inputs import load_inputs
    from fracdet.audit.models import load_classifiers
    from fracdet.audit.run import chunk_items
    from fracdet.data.datasets import ClassificationDataset, collate_skipping_failures
    from fracdet.explain.registry import create_explainer

    inputs = load_inputs(cfg.dataset, split=cfg.split, max_images=cfg.max_images)
    (clf,), _ = load_classifiers(
        cfg, torch.device("cpu"), precision
    )  # the audit's model, prepared as it prepares it (channels-last)
    explainers = {}
    for method in cfg.methods:  # fresh explainers from the registry, with the audit's settings
        explainer = create_explainer(
            method,
            clf.model,
            image_size=clf.meta.image_size,
            backbone_name=clf.meta.backbone,
            channels=cfg.channels,
            baseline=cfg.baseline,
            ig_steps=cfg.ig_steps,
            ig_internal_batch_size=cfg.batch_size,
        )
        explainers[explainer.name] = explainer
    batches = []
    for chunk in chunk_items(inputs.items, cfg.batch_size):
        dataset = ClassificationDataset([item.record() for item in chunk], clf.meta.image_size)
        batch = collate_skipping_failures([dataset[i] for i in range(len(dataset))])
        batches.append((batch.images, batch.labels))
    return Floor(
        clf.model,
        explainers,
        clf.attack,
        precision,
        batches,
        cfg.seed,
        clf.meta.image_size,
        clf.meta.backbone,
    )


def passes_per_image(ig_steps: int, steps: int) -> dict[str, float]:
    """Forward+backward passes (and forward-only passes) the floor makes per image.

    Attack: one pass per step. Per input (clean and PGD): Saliency 1; Grad-CAM 1; DeepLIFT 2
    (captum runs the input and its baseline as one doubled batch); Integrated Gradients
    ``ig_steps``, plus captum's convergence delta: forwards of the input and of its baseline.
    """
    per_input = 1 + 1 + 2 + ig_steps
    return {"passes": steps + 2 * per_input, "forwards": 2 * 2}


def count_flops(model: Any, image_size: int) -> dict[str, float]:
    """FLOPs of one image's forward, and of forward + input-gradient backward (weights frozen)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 1, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    forward = counter.get_total_flops()
    x.requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return {"forward": float(forward), "pass": float(counter.get_total_flops())}


def gemm_peak(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` GFLOP/s of an ``n x n`` matrix product in fp32 and bf16 (both cores)."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
        torch.mm(a, b)
        best = min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))  # noqa: B023 - called at once
        out[name] = 2 * n**3 / best / 1e9
    return out


def quality(out_fp32: Path, out_bf16: Path) -> dict[str, dict[str, float]]:
    """coverage@25 (mean over images, per method and input), PGD/clean accuracy: fp32 vs bf16, %."""
    fp32, bf16 = (json.loads((p / "metrics.json").read_text()) for p in (out_fp32, out_bf16))
    (model,) = fp32["models"]
    rows: dict[str, dict[str, float]] = {}
    for key in ("clean_accuracy", "pgd_accuracy"):
        a, b = fp32["robustness"][model][key], bf16["robustness"][model][key]
        rows[key] = {"fp32": 100 * a, "bf16": 100 * b, "change_pp": 100 * (b - a)}
    for key, value in fp32["localization"][model].items():
        if "coverage@25" not in value:  # stability and IG convergence entries
            continue
        a, b = value["coverage@25"]["mean"], bf16["localization"][model][key]["coverage@25"]["mean"]
        if a is not None and b is not None:
            rows[f"coverage@25 {key}"] = {
                "fp32": 100 * a,
                "bf16": 100 * b,
                "change_pp": 100 * (b - a),
            }
    return rows


def stage_seconds(out: Path) -> dict[str, float]:
    """The audit's own time per stage, as its metrics.json provenance records it."""
    return dict(json.loads((out / "metrics.json").read_text())["provenance"]["seconds"])


def peak_memory(
    args: argparse.Namespace, dataset: Path, cls: Path, out: Path, count: int
) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-c",
        _RSS_SNIPPET,
        str(dataset),
        str(cls),
        str(out),
        str(count),
        str(args.batch_size),
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed ({proc.returncode}): {proc.stderr[-2000:]}")
    hwm = next(
        int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("VmHWM_kB")
    )
    return {"images": count, "main_mb": hwm / 1024, "seconds": time.perf_counter() - start}


def benchmark(args: argparse.Namespace, work: Path) -> Results:

    from fracdet.audit import run_audit
    from fracdet.log import setup_logging

    setup_logging(quiet=True)
    results = Results(
        count=args.count,
        image_size=args.image_size,
        backbone=args.backbone,
        steps=args.steps,
        ig_steps=args.ig_steps,
        batch_size=args.batch_size,
        workers=args.workers,
        rounds=args.rounds,
        loop_count=min(args.loop_count, args.count),
        machine=machine_info(),
        checkpoint=str(args.cls) if args.cls else f"random init {args.backbone}",
        data=str(args.dataset) if args.dataset else "phantoms",
    )
    results.load["start"] = uptime_load()
    if args.dataset is None:
        print(f"generating {args.count} phantoms at {args.size} px ...", flush=True)
        dataset = make_dataset(work / "data", args.count, args.size)
    else:
        dataset = args.dataset
    cls = args.cls or make_checkpoint(work / "cls", args.backbone, args.image_size)
    precisions = ["fp32"] + ([] if args.no_bf16 else ["bf16"])
    floors = {
        p: make_floor(audit_config(args, dataset, cls, work / "unused", p, args.count), p)
        for p in precisions
    }
    model = floors["fp32"].model
    results.image_size, results.backbone = (
        floors["fp32"].image_size,
        floors["fp32"].backbone,
    )  # a given --cls decides these

    variants: dict[str, Callable[[], None]] = {}
    outputs: dict[str, Path] = {}

    def audit(precision: str) -> None:
        # a new folder each round: replacing the last one (--overwrite) would time its deletion
        outputs[precision] = work / f"out_{precision}_{len(list(work.glob(f'out_{precision}_*')))}"
        run_audit(audit_config(args, dataset, cls, outputs[precision], precision, args.count))

    for precision in precisions:
        suffix = "" if precision == "fp32" else f"_{precision}"
        variants[f"audit{suffix}"] = lambda precision=precision: audit(precision)
        variants[f"floor{suffix}"] = floors[precision].batched
    loop = dataclasses.replace(
        floors["fp32"], seconds={}
    )  # the same model, explainers and tensors; its own timings
    variants["loop"] = lambda: loop.per_image(limit=results.loop_count)

    print("warm-up ...", flush=True)
    from fracdet.audit.inputs import load_inputs

    items = load_inputs(dataset, split=args.split, max_images=args.count).items
    results.count, results.loop_count = (
        len(items),
        min(results.loop_count, len(items)),
    )  # a given dataset may hold fewer
    warm = max(
        2, next((k + 1 for k, item in enumerate(items) if item.boxes), len(items))
    )  # a few images, one of them with a box
    for precision in precisions:
        run_audit(audit_config(args, dataset, cls, work / f"warm_{precision}", precision, warm))
        floors[precision].batched(limit=1)
    loop.per_image(limit=2)

    results.times = {name: [] for name in variants}
    names = list(variants)
    for i in range(args.rounds):
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
        for name in order:
            results.times[name].append(timed(variants[name]))
            print(
                f"round {i + 1}/{args.rounds}: {name} {results.times[name][-1]:.1f} s "
                f"(load {uptime_load()})",
                flush=True,
            )
    for precision in precisions:
        results.stages[f"audit {precision}"] = stage_seconds(outputs[precision])
    for precision in precisions:
        results.stages[f"floor {precision}"] = {
            **floors[precision].seconds,
            "total": sum(floors[precision].seconds.values()),
        }
    results.stages["loop fp32"] = {**loop.seconds, "total": sum(loop.seconds.values())}
    if "bf16" in outputs:
        results.quality = quality(outputs["fp32"], outputs["bf16"])

    flops = count_flops(model, results.image_size)
    passes = passes_per_image(args.ig_steps, args.steps)
    results.flops = {
        **flops,
        **passes,
        "per_image": passes["passes"] * flops["pass"] + passes["forwards"] * flops["forward"],
    }
    results.gemm_gflops = gemm_peak()
    results.load["end"] = uptime_load()

    if args.rss_count > 0:
        big = args.rss_count * args.rss_multiplier
        print(f"generating {big} phantoms at 128 px for the memory runs ...", flush=True)
        rss_data = make_dataset(work / "rss", big, 128)
        rss_cls = make_checkpoint(work / "rss_cls", "resnet10t", 64)
        for label, count in (("small", args.rss_count), ("large", big)):
            print(f"peak memory of an audit of {count} images ...", flush=True)
            results.rss[label] = peak_memory(
                args, rss_data, rss_cls, work / f"rss_out_{label}", count
            )
    return results


def print_table(results: Results) -> None:
    s = results.summary()
    m = results.machine
    print()
    print(
        f"{results.count} images ({results.data}), "
        f"{results.checkpoint} at {results.image_size} px, "
        f"PGD {results.steps} steps, IG {results.ig_steps} steps, methods SM DL IG GC, "
        f"batch {results.batch_size}, {results.workers} workers, detector: {results.detector}; "
        f"{m['cores']} cores, {m['cpu']} (bf16: {m['bf16']}); median of {results.rounds} rounds; "
        f"load {results.load.get('start')} -> {results.load.get('end')}"
    )
    ok = "ok" if s["audit_vs_floor"] <= OVERHEAD_TARGET else "MISSED"
    rows = [
        (
            "(a) fracdet audit, fp32",
            f"{s['audit_s']:.1f} s",
            f"{s['audit_images_per_s']:.2f} img/s",
            "",
            "",
        ),
        (
            "(b) compute floor, fp32",
            f"{s['floor_s']:.1f} s",
            f"{s['floor_images_per_s']:.2f} img/s",
            "",
            "",
        ),
        (
            f"(c) per-image loop, fp32, first {results.loop_count} images",
            f"{s['loop_s']:.1f} s",
            f"{s['loop_images_per_s']:.2f} img/s",
            "",
            "",
        ),
        ("(a) / (b), fp32", f"{s['audit_vs_floor']:.3f}", "", f"<= {OVERHEAD_TARGET:.2f}", ok),
        ("(c) / (b), fp32, seconds per image", f"{s['loop_vs_floor']:.3f}", "", "", ""),
    ]
    if "bf16_speedup" in s:
        okb = "ok" if s["bf16_speedup"] >= BF16_SPEEDUP_TARGET else "missed"
        okq = "ok" if s["max_quality_change_pp"] < PRECISION_TOLERANCE_PP else "missed"
        rows += [
            (
                "(a) fracdet audit, bf16 + channels-last",
                f"{s['audit_bf16_s']:.1f} s",
                f"{s['audit_bf16_images_per_s']:.2f} img/s",
                "",
                "",
            ),
            (
                "(b) compute floor, bf16 + channels-last",
                f"{s['floor_bf16_s']:.1f} s",
                f"{s['floor_bf16_images_per_s']:.2f} img/s",
                "",
                "",
            ),
            ("(a) / (b), bf16", f"{s['audit_bf16_vs_floor_bf16']:.3f}", "", "", ""),
            (
                "bf16 speed-up, (a) fp32 / (a) bf16",
                f"{s['bf16_speedup']:.2f}x",
                f"floor: {s['floor_bf16_speedup']:.2f}x",
                f">= {BF16_SPEEDUP_TARGET}x",
                okb,
            ),
            (
                "largest bf16 change, coverage@25 / PGD accuracy",
                f"{s['max_quality_change_pp']:.2f} pp",
                "",
                f"< {PRECISION_TOLERANCE_PP:g} pp",
                okq,
            ),
        ]
    f = results.flops
    rows += [
        (
            "FLOPs per image, fwd / fwd+input-grad",
            f"{f['forward'] / 1e9:.2f} G",
            f"{f['pass'] / 1e9:.2f} G",
            "",
            "",
        ),
        (
            "floor passes per image (fwd+bwd, fwd)",
            f"{f['passes']:.0f}",
            f"{f['forwards']:.2f}",
            "",
            "",
        ),
        (
            "achieved by (b), fp32",
            f"{s['floor_gflops']:.1f} GFLOP/s",
            f"{100 * s['floor_gflops'] / results.gemm_gflops['fp32']:.0f}% of GEMM",
            "",
            "",
        ),
    ]
    if "floor_bf16_gflops" in s:
        rows.append(
            (
                "achieved by (b), bf16",
                f"{s['floor_bf16_gflops']:.1f} GFLOP/s",
                f"{100 * s['floor_bf16_gflops'] / results.gemm_gflops['bf16']:.0f}% of GEMM",
                "",
                "",
            )
        )
    rows.append(
        (
            "GEMM peak (torch.mm 2048^2) fp32 / bf16",
            f"{results.gemm_gflops['fp32']:.0f} GFLOP/s",
            f"{results.gemm_gflops['bf16']:.0f} GFLOP/s",
            "",
            "",
        )
    )
    for key in ("small", "large"):
        if key in results.rss:
            rss = results.rss[key]
            rows.append(
                (
                    f"peak memory, {rss['images']:.0f} images (SM, 1 step, resnet10t 64 px)",
                    f"{rss['main_mb']:.0f} MB",
                    f"{rss['seconds']:.0f} s",
                    "",
                    "",
                )
            )
    if "rss_growth" in s:
        okr = "ok" if s["rss_growth"] <= RSS_GROWTH_TARGET else "MISSED"
        rows.append(
            (
                "peak memory growth, 10x the images",
                f"{s['rss_growth']:.2f}x",
                "",
                f"<= {RSS_GROWTH_TARGET:.2f}x",
                okr,
            )
        )
    print_rows(("measure", "value", "", "target", ""), rows)
    per_round = {
        f"{a}/{b}": [
            round(t / u, 3) for t, u in zip(results.times[a], results.times[b], strict=True)
        ]
        for a, b in (
            ("audit", "floor"),
            ("audit_bf16", "floor_bf16"),
            ("audit", "audit_bf16"),
            ("floor", "floor_bf16"),
        )
        if a in results.times and b in results.times
    }
    print("per-round ratios (seconds):", "; ".join(f"{k} {v}" for k, v in per_round.items()))
    for variant, stages in results.stages.items():
        print(
            f"\ntime per stage, {variant}, last round "
            "(the audit's from its metrics.json provenance):"
        )
        print_rows(
            ("stage", "seconds", "share"),
            [
                (k, f"{v:.2f}", f"{100 * v / stages['total']:.1f}%" if k != "total" else "")
                for k, v in stages.items()
            ],
        )
    if results.quality:
        print("\nfp32 vs bf16 (the same images, attack starts and checkpoint):")
        print_rows(
            ("measure", "fp32", "bf16", "change"),
            [
                (k, f"{v['fp32']:.2f}%", f"{v['bf16']:.2f}%", f"{v['change_pp']:+.2f} pp")
                for k, v in results.quality.items()
            ],
        )
        print(
            "bf16 meets the rule for the default "
            f"(>= {BF16_SPEEDUP_TARGET}x and < {PRECISION_TOLERANCE_PP:g} pp): "
            f"{'yes' if results.bf16_qualifies() else 'no'}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=32, help="phantom images (32)")
    parser.add_argument("--size", type=int, default=256, help="phantom long side in pixels (256)")
    parser.add_argument("--image-size", type=int, default=224, help="classifier input size (224)")
    parser.add_argument(
        "--backbone",
        default="resnet18",
        help="timm backbone of the random-init checkpoint (resnet18)",
    )
    parser.add_argument(
        "--cls",
        type=Path,
        help=(
            "audit this classifier checkpoint instead of a random-init one "
            "(its backbone and size win)"
        ),
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        help="audit this converted dataset (fracdet convert's folder) instead of new phantoms",
    )
    parser.add_argument(
        "--split",
        default="all",
        help="the dataset's split to audit, its first --count images (all)",
    )
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (10, the audit's default)")
    parser.add_argument("--ig-steps", type=int, default=8, help="Integrated Gradients steps (8)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="images per batch (16, the audit's default)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="the audit's DataLoader workers (2, its default)"
    )
    parser.add_argument(
        "--loop-count",
        type=int,
        default=16,
        help="images the per-image loop (c) runs; compared per image (16)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (2)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 runs")
    parser.add_argument(
        "--rss-count",
        type=int,
        default=200,
        help="images of the small memory run (200; 0: skip memory)",
    )
    parser.add_argument(
        "--rss-multiplier",
        type=int,
        default=10,
        help="the large memory run has this many times more (10)",
    )
    add_run_options(parser)
    args = parser.parse_args(argv)
    if (
        min(args.rounds, args.count, args.loop_count, args.batch_size, args.steps, args.ig_steps)
        < 1
        or args.workers < 0
    ):
        parser.error(
            "--rounds, --count, --loop-count, --batch-size, --steps and --ig-steps must be >= 1, "
            "--workers >= 0"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    return run_and_report(
        args,
        "bench-audit-",
        benchmark,
        print_table,
        {
            "audit_vs_floor_max": OVERHEAD_TARGET,
            "bf16_speedup_min": BF16_SPEEDUP_TARGET,
            "precision_change_pp_max": PRECISION_TOLERANCE_PP,
            "rss_growth_max": RSS_GROWTH_TARGET,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
