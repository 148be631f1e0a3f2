"""Benchmark the AutoAttack ensemble (``quick``, ``standard``) against plain ℓ∞ PGD.

What: generate phantom radiographs (default 32 at 96 px, half fractured), convert them, read
them at the classifier's size (48 px), fit a small CNN to them for a few seconds (a standard
model, the one of the masking proof in tests/test_attack_checks.py: the attacks have
something to break, as on a real one), then time, on the same images and ε=4/255:

* ``pgd``: ``attack(kind="pgd")``, the audit's default (10 steps of 1/255, one restart);
* ``autoattack-quick`` and ``autoattack-standard``: ``attack(kind="autoattack")``, the
  sequential ensemble the audit runs with ``--attack autoattack`` (APGD-CE, APGD-margin, FAB,
  Square), with each attack's own seconds;

on the fitted model and on the same model behind :class:`fracdet.robust.masking.QuantizedInput`
(16 grey levels, zero gradients: the gradient attacks fail, so every image reaches Square and
spends all its queries, the ensemble's worst case). Also the robust accuracy each finds.

Why: the issue asks what the stronger attack costs; the ratio to PGD is what a user pays to
switch the audit to ``--attack autoattack`` (the attacks check runs the ensemble on its subset
at every ε of its curve, independently per attack, so about 4x more again per ε).

Every variant is warmed up once, then measured over ``--rounds`` rounds in rotating order; the
table reports medians and the median of the per-round ratios.

Run: ``.venv/bin/python benchmarks/attacks.py [--count N] [--image-size PX] [--rounds R]
[--workdir DIR] [--json PATH] [--check]``. There is no target: ``--check`` only fails when an
attack left its budget (it would have raised).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _bench import add_run_options, print_rows, run_and_report  # noqa: E402 - sibling helper; scripts run as `python benchmarks/x.py`
from predict import machine_info  # noqa: E402 - the same machine description as the predict benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("pgd", "autoattack-quick", "autoattack-standard")


@dataclass
class Results:
    count: int
    image_size: int
    rounds: int
    machine: dict[str, str]
    seconds: dict[str, list[float]] = field(default_factory=dict)  # "model/variant" -> rounds
    per_attack: dict[str, dict[str, float]] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        medians = {key: statistics.median(v) for key, v in self.seconds.items()}
        for key, rounds in list(self.seconds.items()):
            model, variant = key.split("/")
            if variant != "pgd":
                ratios = [a / b for a, b in zip(rounds, self.seconds[f"{model}/pgd"], strict=True)]
                medians[f"{key} / pgd"] = statistics.median(ratios)
        return medians

    def passed(self) -> bool:
        return True  # an attack outside its budget raises before any number is written


def _data(args: argparse.Namespace, work: Path):
    import torch

    from data_tools.phantoms import PhantomConfig, generate_phantoms
    from fracdet.audit.inputs import load_inputs
    from fracdet.data.convert import ConvertConfig, convert
    from fracdet.data.datasets import ClassificationDataset

    source = generate_phantoms(
        PhantomConfig(work / "phantoms", count=args.count, size=96, seed=0, prevalence=0.5)
    )
    dataset = convert(ConvertConfig(source=source, output=work / "dataset", seed=0)).output
    items = load_inputs(dataset, split="all").items
    data = ClassificationDataset([it.record() for it in items], args.image_size, keep_aspect=True)
    images = torch.stack([data[k][0] for k in range(len(items))])
    return images, torch.tensor([it.label for it in items])


def _fitted_cnn(images, labels):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 1),
        nn.Flatten(0),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.binary_cross_entropy_with_logits(model(images), labels.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def benchmark(args: argparse.Namespace, work: Path) -> Results:
    import torch

    from fracdet.robust import AttackConfig, attack
    from fracdet.robust.masking import QuantizedInput

    images, labels = _data(args, work)
    fitted = _fitted_cnn(images, labels)
    models = {"fitted": fitted, "masked": QuantizedInput(fitted, levels=16)}
    configs = {
        "pgd": AttackConfig(),
        "autoattack-quick": AttackConfig(kind="autoattack", budget="quick"),
        "autoattack-standard": AttackConfig(kind="autoattack", budget="standard"),
    }
    results = Results(args.count, args.image_size, args.rounds, machine_info())

    def run(model_name: str, variant: str) -> float:
        timings: dict[str, float] = {}
        model = models[model_name]
        started = time.perf_counter()
        adv = attack(
            model,
            images,
            labels,
            configs[variant],
            generator=torch.Generator().manual_seed(0),
            timings=timings,
        )
        elapsed = time.perf_counter() - started
        with torch.no_grad():
            correct = (model(adv) > 0).long() == labels
        results.accuracy[f"{model_name}/{variant}"] = float(correct.float().mean())
        if timings:
            results.per_attack[f"{model_name}/{variant}"] = {
                k.removeprefix("attack:"): round(v, 3) for k, v in timings.items()
            }
        return elapsed

    for model_name in models:
        run(model_name, "pgd")  # warm-up
    keys = [(m, v) for m in models for v in VARIANTS]
    for round_ in range(args.rounds):
        for model_name, variant in keys[round_ % len(keys) :] + keys[: round_ % len(keys)]:
            seconds = run(model_name, variant)
            results.seconds.setdefault(f"{model_name}/{variant}", []).append(seconds)
    return results


def print_table(results: Results) -> None:
    summary = results.summary()
    rows = []
    for key in results.seconds:
        ratio = summary.get(f"{key} / pgd")
        rows.append(
            (
                key,
                f"{summary[key]:.2f}",
                "1.0" if ratio is None else f"{ratio:.1f}",
                f"{results.accuracy[key]:.3f}",
                ", ".join(f"{k} {v:.2f}" for k, v in results.per_attack.get(key, {}).items()),
            )
        )
    print(
        f"{results.count} phantoms at {results.image_size} px, ε=4/255, "
        f"median of {results.rounds} rounds; machine: {results.machine}"
    )
    print_rows(("model/attack", "seconds", "x PGD", "robust acc", "seconds per attack"), rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=32, help="phantom images (32)")
    parser.add_argument("--image-size", type=int, default=48, help="classifier input (48 px)")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds (2)")
    add_run_options(parser)
    args = parser.parse_args()
    return run_and_report(args, "fracdet-bench-attacks-", benchmark, print_table, targets={})


if __name__ == "__main__":
    sys.exit(main())
