"""How much the robust-transfer study's protocol choices move its numbers, measured on phantoms.

What: phantom radiographs through ``configs/r2i.yaml`` (the study's split, resize, linear probe
and audit settings) with a RobustBench backbone that normalises inside (so ε in normalized
space differs from ε in pixels), then two audits over every image (``--split all``), ε=4/255 in
normalized space (the study) and in pixel space (fracdet). The per-image rows give each
combination of ε space and images scored: all images (the study scored every fractured image,
most of them training images) or the test split only (fracdet). Prints the README table.

Why: the README's "What differs from the study" says which choices fracdet makes differently;
this measures how far each one moves clean accuracy, PGD accuracy and coverage@25.

Run: ``.venv/bin/python benchmarks/r2i_choices.py [--count N] [--image-size S] [--backbone B]
[--global-pool P] [--epochs E] [--workdir DIR]`` (offline: the backbone starts from random
weights; pass ``--weights`` for real ones).
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
        values = [float(r[f"{code}_clean_cov25"]) for r in rows if r.get(f"{code}_clean_cov25")]
        out[f"{code}_cov25"] = float(np.mean(values)) if values else float("nan")
        values = [float(r[f"{code}_pgd_cov25"]) for r in rows if r.get(f"{code}_pgd_cov25")]
        out[f"{code}_pgd_cov25"] = float(np.mean(values)) if values else float("nan")
    return out


def main() -> None:
    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.audit import AuditConfig, run_audit
    from fracdet.cls.train import ClsTrainConfig, train_classifier
    from fracdet.config import build_config
    from fracdet.data.convert import ConvertConfig, convert
    from fracdet.data.manifest import read_manifest
    from fracdet.log import setup_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--size", type=int, default=64, help="phantom long side")
    parser.add_argument("--image-size", type=int, default=32, help="classifier input (stretched)")
    parser.add_argument("--backbone", default="robustbench:Rebuffi2021Fixing_R18_ddpm")
    parser.add_argument("--global-pool", default="max")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    setup_logging(quiet=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fracdet-r2i-"))
    started = time.perf_counter()
    source = generate_phantoms(
        PhantomConfig(
            work / "phantoms",
            count=args.count,
            size=args.size,
            seed=0,
            prevalence=0.5,
            crack_scale=10.0,
            workers=1,
            overwrite=True,
        )
    )
    data = convert(
        build_config(ConvertConfig, PRESET, source=source, output=work / "data", overwrite=True)
    ).output
    split_of = {str(r.path): r.split for r in read_manifest(data / "manifest.csv")}
    train = build_config(
        ClsTrainConfig, PRESET, manifest=data / "manifest.csv", output=work / "run", backbone=args.backbone, weights=args.weights,
        image_size=args.image_size, global_pool=args.global_pool, epochs=args.epochs, workers=0, device="cpu", overwrite=True,
    )  # fmt: skip
    result = train_classifier(train)
    threshold = json.loads((work / "run" / "best.json").read_text())["threshold"]
    table = []
    for space in ("normalized", "pixel"):
        out = work / f"audit-{space}"
        shutil.rmtree(out, ignore_errors=True)
        run_audit(
            build_config(
                AuditConfig,
                PRESET,
                dataset=data,
                classifiers=(work / "run",),
                split="all",
                eps_space=space,
                output=out,
                workers=0,
                device="cpu",
            )
        )
        rows = _rows(out / "per_image.csv")
        pixel_eps = json.loads((out / "metrics.json").read_text())["provenance"]["classifiers"][
            "run"
        ]["pixel_eps"]
        for scored in ("all", "test"):
            chosen = (
                rows if scored == "all" else [r for r in rows if split_of.get(r["path"]) == "test"]
            )
            table.append(
                {
                    "eps": f"4/255 {space} = {pixel_eps * 255:.2f}/255 px",
                    "images": scored,
                    **_summary(chosen, threshold),
                }
            )
    print(
        f"val {result.best_score:.3f} (best epoch {result.best_epoch}); {time.perf_counter() - started:.0f} s; work in {work}"
    )
    print(
        "| ε (as set = in grey levels) | images scored | n | clean acc | PGD acc | coverage@25 SM / DL / IG (clean) | coverage@25 SM / DL / IG (PGD) |"
    )
    print("| --- | --- | ---: | ---: | ---: | --- | --- |")
    for row in table:
        clean = " / ".join(f"{row[f'{c}_cov25']:.2f}" for c in CODES)
        pgd = " / ".join(f"{row[f'{c}_pgd_cov25']:.2f}" for c in CODES)
        print(
            f"| {row['eps']} | {row['images']} | {row['n']} | {row['clean_acc']:.3f} | {row['pgd_acc']:.3f} | {clean} | {pgd} |"
        )


if __name__ == "__main__":
    main()
