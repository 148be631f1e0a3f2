"""Measure what MAE pretraining buys at small scale: masked-patch error, then a linear probe.

What: on phantoms (or the FracAtlas sample in ``../shared/data``), a small ViT-MAE is
pretrained from random weights with ``pretrain_mae``; then two linear probes with the same
budget (frozen encoder, Adam, same epochs, same seed) are trained with ``train_classifier``:

* **random**: the encoder as it started (``initial.safetensors`` exported with the same
  key mapping), i.e. a random-init ViT of the same architecture;
* **mae**: the adapted encoder (``encoder.safetensors``);
* **imagenet**: ImageNet EfficientNet-Lite0 (``tf_efficientnet_lite0 --pretrained``, from the
  ``pretrained-cpu`` package, offline): what a standard pretrained CNN encoder gives under the
  same probe (another architecture, 3.4 M parameters, its own 1280-d features); skipped when
  the package is not installed.

Reported: the masked-patch MSE (grey levels², fixed masks, validation split) before and after
pretraining, and each probe's test AUROC with its stratified bootstrap 95% CI from
``evaluate_classifier``. The one target (``--check``): pretraining lowers the masked-patch
MSE. The probe comparison is reported whatever it shows.

Run: ``.venv/bin/python benchmarks/mae.py [--dataset phantoms|fracatlas] [--count N] [--size PX]
[--image-size PX] [--patch-size PX] [--width D] [--depth L] [--heads H] [--epochs E]
[--probe-epochs E] [--batch-size B] [--workers W] [--n-boot N] [--figure PNG] [--json PATH]
[--check]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._bench import add_run_options, print_rows, run_and_report  # noqa: E402

FRACATLAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fracatlas" / "FracAtlas"


@dataclass
class Results:
    dataset: str
    images: dict[str, int]
    model: dict[str, Any]
    pretrain_seconds: float
    mse_start: float
    mse_adapted: float
    loss_start: float
    loss_adapted: float
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "mse_start": self.mse_start,
            "mse_adapted": self.mse_adapted,
            **{f"auroc_{k}": v["auroc"] for k, v in self.probes.items()},
        }

    def passed(self) -> bool:
        return self.mse_adapted < self.mse_start


def _dataset(args, work: Path) -> Path:
    from fracdet.data.convert import ConvertConfig, convert

    if args.dataset == "fracatlas":
        if not FRACATLAS.is_dir():
            raise SystemExit(f"the FracAtlas sample is not at {FRACATLAS}")
        source = FRACATLAS
    else:
        from data_tools.phantoms import PhantomConfig, generate_phantoms

        source = generate_phantoms(
            PhantomConfig(
                work / "phantoms",
                count=args.count,
                size=args.size,
                seed=args.seed,
                prevalence=0.5,
                crack_scale=args.crack_scale,
                workers=args.workers,
            )
        )
    return (
        convert(
            ConvertConfig(
                source=source, output=work / "dataset", seed=args.seed, targets=("manifest",)
            )
        ).output
        / "manifest.csv"
    )


def benchmark(args, work: Path) -> Results:
    from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier
    from fracdet.cls.pretrained import packaged_weights
    from fracdet.cls.train import ClsTrainConfig, train_classifier
    from fracdet.mae.checkpoint import read_mae_state
    from fracdet.mae.encoder_to_timm import export_encoder
    from fracdet.mae.train import MAETrainConfig, pretrain_mae

    manifest = _dataset(args, work)
    model_args = {
        "hidden_size": args.width,
        "num_hidden_layers": args.depth,
        "num_attention_heads": args.heads,
        "intermediate_size": 4 * args.width,
        "decoder_hidden_size": args.width,
        "decoder_num_hidden_layers": 2,
        "decoder_num_attention_heads": args.heads,
        "decoder_intermediate_size": 4 * args.width,
    }
    start = time.perf_counter()
    run = pretrain_mae(
        MAETrainConfig(
            data=manifest,
            output=work / "mae",
            image_size=args.image_size,
            patch_size=args.patch_size,
            model_args=model_args,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_epochs=1.0,
            workers=args.workers,
            seed=args.seed,
        )
    )
    seconds = time.perf_counter() - start
    if args.figure is not None:  # the README's figure: mae-show on the validation split
        import shutil

        from fracdet.mae.show import MAEShowConfig, show_mae

        shown = show_mae(
            MAEShowConfig(
                run.run_dir,
                manifest,
                output=work / "show",
                count=4,
                workers=args.workers,
                seed=args.seed,
            )
        )
        shutil.copyfile(shown.figure, args.figure)
    meta, state, _ = read_mae_state(run.run_dir / "initial.safetensors")
    encoders = {
        "random": export_encoder(state, meta.hf_config, work / "random_encoder.safetensors"),
        "mae": run.encoder,
    }
    starts: dict[str, dict[str, Any]] = {
        name: {"backbone": "vit_base_patch16_224.mae", "weights": weights}
        for name, weights in encoders.items()
    }
    if packaged_weights("tf_efficientnet_lite0") is not None:
        starts["imagenet"] = {"backbone": "tf_efficientnet_lite0", "pretrained": True}
    probes = {}
    for name, start in starts.items():
        probe = train_classifier(
            ClsTrainConfig(
                manifest=manifest,
                output=work / f"probe_{name}",
                **start,
                image_size=args.image_size,
                mode="linear",
                optimizer="adam",
                lr=1e-3,
                weight_decay=0.0,
                scheduler="none",
                warmup_epochs=0,
                epochs=args.probe_epochs,
                patience=args.probe_epochs,
                batch_size=args.batch_size,
                workers=args.workers,
                seed=args.seed,
            )
        )
        summary = evaluate_classifier(
            EvalClsConfig(
                probe.run_dir,
                manifest,
                split="test",
                output=work / f"eval_{name}",
                workers=args.workers,
                n_boot=args.n_boot,
                seed=args.seed,
            )
        )
        metrics = summary.metrics
        probes[name] = {
            "auroc": metrics["auroc"],
            "auroc_ci95": metrics["ci95"]["auroc"],
            "n": metrics["n"],
            "val_auroc": probe.best_score,
        }
    import csv

    with open(manifest, newline="", encoding="utf-8") as fh:
        splits = [row["split"] for row in csv.DictReader(fh)]
    return Results(
        args.dataset,
        {s: splits.count(s) for s in sorted(set(splits))},
        {"image_size": args.image_size, "patch_size": args.patch_size, **model_args},
        seconds,
        run.initial["mse"],
        run.best_val["mse"],
        run.initial["loss"],
        run.best_val["loss"],
        probes,
    )


def print_table(results: Results) -> None:
    print(
        f"{results.dataset}: {results.images}; ViT width {results.model['hidden_size']}, "
        f"depth {results.model['num_hidden_layers']}, {results.model['image_size']} px, "
        f"{results.model['patch_size']}-px patches; pretraining {results.pretrain_seconds:.0f} s"
    )
    imagenet = results.probes.get("imagenet")
    print_rows(
        ("measure", "start (random init)", "after MAE", "ImageNet Lite0 (CNN)"),
        [
            (
                "val masked-patch MSE (grey levels^2)",
                f"{results.mse_start:.4f}",
                f"{results.mse_adapted:.4f}",
                "-",
            ),
            (
                "val masked-patch loss (normalised)",
                f"{results.loss_start:.4f}",
                f"{results.loss_adapted:.4f}",
                "-",
            ),
            *[
                (
                    f"linear probe test AUROC (n={results.probes['mae']['n']}, 95% CI)",
                    *(
                        f"{p['auroc']:.3f} [{p['auroc_ci95'][0]:.3f}, {p['auroc_ci95'][1]:.3f}]"
                        for p in (results.probes["random"], results.probes["mae"])
                    ),
                    f"{imagenet['auroc']:.3f} "
                    f"[{imagenet['auroc_ci95'][0]:.3f}, {imagenet['auroc_ci95'][1]:.3f}]"
                    if imagenet
                    else "not installed",
                )
            ],
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=("phantoms", "fracatlas"), default="phantoms")
    parser.add_argument("--count", type=int, default=400, help="phantom images generated")
    parser.add_argument("--size", type=int, default=128, help="phantom long side in px")
    parser.add_argument(
        "--crack-scale", type=float, default=3.0, help="phantom fracture conspicuity"
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20, help="MAE pretraining epochs")
    parser.add_argument("--lr", type=float, default=1e-3, help="MAE peak learning rate")
    parser.add_argument("--probe-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    add_run_options(parser)
    parser.add_argument(
        "--figure", type=Path, help="copy mae-show's figure (validation images) here"
    )
    args = parser.parse_args()
    from fracdet.log import setup_logging

    setup_logging(quiet=True)
    return run_and_report(
        args, "fracdet-bench-mae-", benchmark, print_table, {"mse_adapted_below_start": 1.0}
    )


if __name__ == "__main__":
    sys.exit(main())
