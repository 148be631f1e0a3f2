"""Benchmark ``fracdet train-cls`` against a plain hand-written timm + torch training loop.

What: on the same phantom images, model, batch size, precision and worker count, measure
training throughput (images/s over one epoch, data loading included, validation excluded) of

* a plain loop: ``timm.create_model`` + DataLoader(PIL decode, resize, pad) + AdamW + BCE,
* ``train_classifier`` with augmentation off (the same work as the plain loop),
* ``train_classifier`` with its default radiograph augmentation,
* ``train_classifier`` with PGD-AT (``--adv pgd``, ``steps`` steps),

plus the fraction of step time fracdet spends waiting for data, and the plain loop in fp32
to show what mixed precision buys on this hardware.

Targets (issue 3): fracdet's overhead over the plain loop at most 10%; PGD-AT costs close to
``steps + 1`` clean steps.

Run: ``.venv/bin/python benchmarks/train_cls.py [--count N] [--image-size PX] [--rounds R]
[--backbone NAME] [--batch-size B] [--workers W] [--pgd-steps K] [--json PATH] [--check]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OVERHEAD_TARGET = 0.10


class PlainDataset(torch.utils.data.Dataset):
    """What a hand-written loop does: decode, resize the long side, pad to a square."""

    def __init__(self, paths: list[Path], labels: list[int], size: int) -> None:
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import cv2
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            pixels = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        h, w = pixels.shape
        scale = self.size / max(h, w)
        pixels = cv2.resize(
            pixels,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
        canvas = np.zeros((self.size, self.size), np.float32)
        top, left = (self.size - pixels.shape[0]) // 2, (self.size - pixels.shape[1]) // 2
        canvas[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
        return torch.from_numpy(canvas[None]), self.labels[i]


def plain_epoch(records, args, precision: str) -> float:
    """Images/s of one epoch of the plain loop (the baseline)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(args.backbone, num_classes=1).to(memory_format=torch.channels_last)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    data = PlainDataset([r.path for r in records], [r.label for r in records], args.image_size)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        prefetch_factor=4 if args.workers else None,
    )
    model.train()
    seen, start = 0, time.perf_counter()
    for images, labels in loader:
        images = ((images.expand(-1, 3, -1, -1) - mean) / std).contiguous(
            memory_format=torch.channels_last
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(images).squeeze(1).float(), labels.float()
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def fracdet_epoch(manifest: Path, out: Path, args, **changes) -> dict:
    """Images/s and data-wait fraction of one fracdet training epoch (from its metrics log)."""
    from fracdet.cls.train import ClsTrainConfig, train_classifier

    cfg = ClsTrainConfig(
        manifest=manifest,
        output=out,
        backbone=args.backbone,
        image_size=args.image_size,
        batch_size=args.batch_size,
        workers=args.workers,
        epochs=1,
        overwrite=True,
        precision=args.precision,
        imbalance="none",
        **changes,
    )
    row = train_classifier(cfg).history[0]
    return {"images_per_s": row["images_per_s"], "data_wait_fraction": row["data_wait_fraction"]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--count", type=int, default=240, help="phantom images generated (about 80%% train)"
    )
    parser.add_argument("--size", type=int, default=256, help="phantom long side in px")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pgd-steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()

    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.data.convert import ConvertConfig, convert
    from fracdet.data.manifest import read_manifest
    from fracdet.log import setup_logging
    from fracdet.runtime import resolve_precision

    setup_logging(quiet=True)
    args.precision = resolve_precision("auto", torch.device("cpu"))
    work = Path(tempfile.mkdtemp(prefix="fracdet-bench-cls-"))
    source = generate_phantoms(
        PhantomConfig(work / "phantoms", count=args.count, size=args.size, seed=0, prevalence=0.5)
    )
    dataset = convert(ConvertConfig(source=source, output=work / "dataset", seed=0)).output
    manifest = dataset / "manifest.csv"
    train = [r for r in read_manifest(manifest) if r.split == "train"]

    variants = {
        "plain loop": lambda: {"images_per_s": plain_epoch(train, args, args.precision)},
        "fracdet, no augmentation": lambda: fracdet_epoch(
            manifest, work / "run", args, augment_p=0.0
        ),
        "fracdet, default augmentation": lambda: fracdet_epoch(manifest, work / "run", args),
        f"fracdet, PGD-AT {args.pgd_steps} steps": lambda: fracdet_epoch(
            manifest, work / "run", args, augment_p=0.0, adv="pgd", adv_steps=args.pgd_steps
        ),
        "plain loop, fp32": lambda: {"images_per_s": plain_epoch(train, args, "fp32")},
    }
    names = list(variants)
    for name in names:  # warm-up: imports, page cache, allocator
        variants[name]()
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            runs[name].append(variants[name]())
    ips = {name: statistics.median(r["images_per_s"] for r in rs) for name, rs in runs.items()}

    def per_round(a: str, b: str) -> float:
        return statistics.median(
            runs[b][i]["images_per_s"] / runs[a][i]["images_per_s"] for i in range(args.rounds)
        )

    pgd = f"fracdet, PGD-AT {args.pgd_steps} steps"
    results = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "precision": args.precision,
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train_images": len(train),
        "images_per_s": ips,
        "overhead_no_augmentation": per_round("fracdet, no augmentation", "plain loop") - 1,
        "overhead_default_augmentation": per_round("fracdet, default augmentation", "plain loop")
        - 1,
        "data_wait_fraction": statistics.median(
            r["data_wait_fraction"] for r in runs["fracdet, default augmentation"]
        ),
        "pgd_step_cost": per_round(pgd, "fracdet, no augmentation"),
        "pgd_step_cost_theory": args.pgd_steps + 1,
        "mixed_precision_speedup": per_round("plain loop, fp32", "plain loop"),
    }
    print(
        f"{len(train)} train images, {args.backbone} at {args.image_size} px, "
        f"batch {args.batch_size}, {args.workers} workers, {args.precision}; "
        f"median of {args.rounds} rounds"
    )
    print(f"{'variant':34s} {'images/s':>9s}")
    for name in names:
        print(f"{name:34s} {ips[name]:9.1f}")
    print(
        f"fracdet overhead vs plain loop:  {results['overhead_no_augmentation']:+.1%} "
        f"(no augmentation), {results['overhead_default_augmentation']:+.1%} "
        f"(default augmentation); target <= {OVERHEAD_TARGET:.0%}"
    )
    print(f"data wait: {results['data_wait_fraction']:.1%} of step time")
    print(
        f"PGD-AT step cost: {results['pgd_step_cost']:.2f}x a clean step "
        f"(theory: {args.pgd_steps + 1}x)"
    )
    print(f"{args.precision} vs fp32 (plain loop): {results['mixed_precision_speedup']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    missed = results["overhead_no_augmentation"] > OVERHEAD_TARGET
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
