"""How much the robust-transfer study's protocol choices move its numbers, measured on phantoms.

What: phantom radiographs through ``configs/r2i.yaml`` (the study's split, resize and audit
settings; the training options below replace the preset's linear probe, because a backbone
with random weights, all there is offline, gives a linear probe nothing to learn from), then
four audits: ε=4/255 in normalized space (the study) and in pixel space (fracdet), each on
training images (most of the images the study scored were) and on the test split (fracdet).
The backbone normalises (timm's ImageNet std ≈ 0.225), so the two ε spaces differ. Prints the
README table.

Why: the README's "What differs from the study" says which choices fracdet makes differently;
this measures how far each one moves clean accuracy, PGD accuracy and coverage@25.

Run: ``.venv/bin/python benchmarks/r2i_choices.py [--count N] [--size S] [--backbone B]
[--mode M] [--epochs E] [--lr LR] [--max-images N] [--weights W] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "r2i.yaml"
CODES = ("SM", "DL", "IG")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["status"] == "ok"]


def _summary(rows: list[dict[str, str]], threshold: float) -> dict[str, float]:
    labels = np.array([int(r["label"]) for r in rows])
    out = {"n": len(rows)}
    for cond in ("clean", "pgd"):
        p = np.array([float(r[f"p_{cond}"]) for r in rows])
        out[f"{cond}_acc"] = float(((p >= threshold).astype(int) == labels).mean())
        for code in CODES:
            values = [
                float(r[f"{code}_{cond}_cov25"]) for r in rows if r.get(f"{code}_{cond}_cov25")
            ]
            out[f"{code}_{cond}_cov25"] = float(np.mean(values)) if values else float("nan")
    return out


def main() -> None:
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.audit import AuditConfig, run_audit
    from fracdet.cls.train import ClsTrainConfig, train_classifier
    from fracdet.config import build_config
    from fracdet.data.convert import ConvertConfig, convert
    from fracdet.log import setup_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=800)
    parser.add_argument(
        "--size", type=int, default=64, help="phantom long side and classifier input (stretched)"
    )
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--mode", default="full")
    parser.add_argument("--global-pool", default="max")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-images", type=int, default=60, help="images audited per split")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    setup_logging(quiet=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fracdet-r2i-"))
    started = time.perf_counter()
    phantoms = PhantomConfig(
        work / "phantoms",
        count=args.count,
        size=args.size,
        seed=0,
        prevalence=0.5,
        crack_scale=10.0,
        workers=1,
        overwrite=True,
    )
    data = convert(
        build_config(
            ConvertConfig,
            PRESET,
            source=generate_phantoms(phantoms),
            output=work / "data",
            overwrite=True,
        )
    ).output
    train = build_config(
        ClsTrainConfig,
        PRESET,
        manifest=data / "manifest.csv",
        output=work / "run",
        backbone=args.backbone,
        weights=args.weights,
        mode=args.mode,
        image_size=args.size,
        global_pool=args.global_pool,
        epochs=args.epochs,
        patience=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        optimizer="adamw",
        scheduler="cosine",
        workers=0,
        device="cpu",
        overwrite=True,
    )
    result = train_classifier(train)
    print(
        f"trained: val AUROC {result.best_score:.3f} (epoch {result.best_epoch}), "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    threshold = json.loads((work / "run" / "best.json").read_text())["threshold"]
    table = []
    for space in ("normalized", "pixel"):
        for split in ("train", "test"):
            out = work / f"audit-{space}-{split}"
            shutil.rmtree(out, ignore_errors=True)
            cfg = build_config(
                AuditConfig,
                PRESET,
                dataset=data,
                classifiers=(work / "run",),
                split=split,
                max_images=args.max_images,
                eps_space=space,
                output=out,
                workers=0,
                device="cpu",
            )
            run_audit(cfg)
            pixel_eps = json.loads((out / "metrics.json").read_text())["provenance"]["classifiers"][
                "run"
            ]["pixel_eps"]
            table.append(
                {
                    "eps": f"4/255 {space} = {pixel_eps * 255:.2f}/255 px",
                    "images": split,
                    **_summary(_rows(out / "per_image.csv"), threshold),
                }
            )
            print(f"audited {space} {split}: {time.perf_counter() - started:.0f} s", flush=True)
    print(f"{time.perf_counter() - started:.0f} s in all; work in {work}")
    print(
        "| ε as set = in grey levels | images scored | n | clean acc | PGD acc "
        "| coverage@25 SM / DL / IG, clean | coverage@25 SM / DL / IG, PGD |"
    )
    print("| --- | --- | ---: | ---: | ---: | --- | --- |")
    for row in table:
        clean = " / ".join(f"{row[f'{c}_clean_cov25']:.2f}" for c in CODES)
        pgd = " / ".join(f"{row[f'{c}_pgd_cov25']:.2f}" for c in CODES)
        print(
            f"| {row['eps']} | {row['images']} | {row['n']} | {row['clean_acc']:.3f} "
            f"| {row['pgd_acc']:.3f} | {clean} | {pgd} |"
        )


if __name__ == "__main__":
    main()
