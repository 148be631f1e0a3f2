"""``fracdet mae-show``: what adaptation changed, as a figure and as a number.

For a fixed, seeded set of images and fixed masks, the figure shows original | masked |
reconstruction | reconstruction with the visible patches pasted back, for the starting
weights (``initial.safetensors``, saved by pretrain-mae) and the adapted ones side by side.
The masked-patch error of both models over all the images given (by default a manifest's
``val`` split) goes to ``mae_show.json`` and the printed line.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fracdet.cls.data import make_loader
from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.fsutil import atomic_output_dir, atomic_write_json, check_folder_path
from fracdet.mae.checkpoint import MAEMeta, load_mae, resolve_mae_checkpoint
from fracdet.mae.data import as_split, list_unlabelled
from fracdet.mae.model import PixelMAE
from fracdet.mae.reconstruction import fixed_noise, masked_error, per_image_mse
from fracdet.provenance import versions
from fracdet.report.figures import new_grid, save_figure
from fracdet.runtime import autocast, resolve_device, resolve_precision, seed_everything

__all__ = ["MAEShowConfig", "MAEShowSummary", "show_mae", "reconstruction_panels"]

logger = logging.getLogger(__name__)

MASK_GREY = (
    0.5  # masked patches are drawn mid-grey: black would vanish into a radiograph's background
)


@dataclass(frozen=True)
class MAEShowConfig:
    checkpoint: Path
    images: Path
    output: Path = Path("reports/mae-show")
    split: str = "val"  # a manifest's split to look at (all: every image); a folder: all its images
    count: int = 4  # images in the figure
    max_images: int | None = None  # images scored (None: all)
    batch_size: int = 16
    precision: str = "auto"
    device: str | None = None
    workers: int = 2
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"count must be >= 1, got {self.count}")
        if self.max_images is not None and self.max_images < 1:
            raise ConfigError(f"max_images must be >= 1, got {self.max_images}")


@dataclass(frozen=True)
class MAEShowSummary:
    """What :func:`show_mae` wrote, and the numbers (as in ``mae_show.json``)."""

    output: Path
    figure: Path
    metrics: dict[str, Any]

    def line(self) -> str:
        start, adapted = self.metrics["start"], self.metrics["adapted"]
        return (
            f"masked-patch MSE on {adapted['images']} images "
            f"({self.metrics['mask_ratio']:.0%} of patches hidden): "
            f"start {start['mse']:.4f} -> adapted {adapted['mse']:.4f} (loss "
            f"{start['loss']:.4f} -> {adapted['loss']:.4f}); figure: {self.figure}"
        )


def _initial_checkpoint(checkpoint: Path) -> Path:
    weights, meta = resolve_mae_checkpoint(checkpoint)
    # another model's checkpoint is refused as such, not as one missing its initial.*
    MAEMeta.from_json(meta.read_text(encoding="utf-8"), meta)
    initial = weights.parent / "initial.safetensors"
    if not initial.is_file() or not initial.with_suffix(".json").is_file():
        raise ConfigError(
            "no initial.safetensors/.json beside the checkpoint: mae-show compares with the "
            "starting weights pretrain-mae saves there",
            weights.parent,
        )
    return initial


@torch.no_grad()
def reconstruction_panels(
    model: PixelMAE, images: torch.Tensor, noise: torch.Tensor, *, precision: str = "fp32"
) -> dict[str, np.ndarray]:
    """``(B, S, S)`` arrays in [0, 1]: ``masked``, ``reconstruction``, ``pasted`` (visible
    patches put back), and ``mse`` ``(B,)``.
    """
    model.eval()
    with autocast(images.device, precision):
        out = model(images, noise=noise)
    mask = model.patch_mask(out.mask)
    recon = model.to_pixels(out.logits).clamp(0, 1)
    images = images.float()
    panels = {
        "masked": images * (1 - mask) + MASK_GREY * mask,
        "reconstruction": recon,
        "pasted": images * (1 - mask) + recon * mask,
    }
    result = {name: value[:, 0].cpu().numpy() for name, value in panels.items()}
    result["mse"] = per_image_mse(model, images, out.logits, out.mask).cpu().numpy()
    return result


def show_mae(cfg: MAEShowConfig) -> MAEShowSummary:
    """Score both models on the images and draw the figure into ``cfg.output``."""
    initial_path = _initial_checkpoint(cfg.checkpoint)
    # refused before minutes of scoring, not after
    if Path(cfg.output).exists() and not cfg.overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", cfg.output)
    check_folder_path(Path(cfg.output).parent)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    adapted, meta = load_mae(cfg.checkpoint, device=device)
    start, start_meta = load_mae(initial_path, device=device)
    records, skipped = list_unlabelled(cfg.images, split=cfg.split)
    if cfg.max_images is not None:
        records = records[: cfg.max_images]
    loader = make_loader(
        as_split(records),
        adapted.image_size,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        pin_memory=device.type == "cuda",
    )
    scores = {
        name: masked_error(
            model,
            loader,
            device=device,
            precision=precision,
            seed=cfg.seed,
            description=f"score {name}",
        )
        for name, model in (("start", start), ("adapted", adapted))
    }
    failures = {records[i].path: reason for i, reason in scores["adapted"].failures}
    skipped = [{"file": str(f), "reason": r} for f, r in sorted(failures.items())] + skipped
    if scores["adapted"].images == 0:
        raise DataError(
            f"none of the {len(records)} images could be read"
            + (f" (e.g. {skipped[0]['reason']})" if skipped else ""),
            cfg.images,
        )
    readable = [i for i in range(len(records)) if records[i].path not in failures]
    picks = sorted(
        np.random.default_rng(cfg.seed)
        .choice(readable, size=min(cfg.count, len(readable)), replace=False)
        .tolist()
    )
    batch = torch.stack([loader.dataset[i][0] for i in picks]).to(device)
    # the masks the scores used
    noise = fixed_noise(picks, adapted.num_patches, cfg.seed).to(device)
    panels = {
        "start": reconstruction_panels(start, batch, noise, precision=precision),
        "adapted": reconstruction_panels(adapted, batch, noise, precision=precision),
    }
    metrics = {
        "start": scores["start"].as_dict(),
        "adapted": scores["adapted"].as_dict(),
        "mask_ratio": adapted.mask_ratio,
        "mse_units": "grey levels in [0, 1], squared, on masked patches only",
        "loss_units": "the training loss: MSE of ImageNet-normalised pixels on masked patches",
        "figure_images": [
            {
                "file": str(records[i].path),
                "start_mse": float(panels["start"]["mse"][k]),
                "adapted_mse": float(panels["adapted"]["mse"][k]),
            }
            for k, i in enumerate(picks)
        ],
    }
    doc = {
        **metrics,
        "checkpoint": str(cfg.checkpoint),
        "epoch": meta.epoch,
        "start_weights": start_meta.init,
        "images_from": str(cfg.images),
        "skipped": skipped,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "versions": {**versions(), **versions(["transformers"])},
    }
    with atomic_output_dir(cfg.output, overwrite=cfg.overwrite) as tmp:
        _draw(
            batch[:, 0].cpu().numpy(),
            panels,
            [records[i].image_id for i in picks],
            adapted.mask_ratio,
            tmp / "mae_show.png",
        )
        atomic_write_json(tmp / "mae_show.json", doc)
    logger.info("mae-show: start %s vs adapted epoch %d", start_meta.init, meta.epoch)
    return MAEShowSummary(Path(cfg.output), Path(cfg.output) / "mae_show.png", metrics)


def _draw(
    originals: np.ndarray,
    panels: dict[str, dict[str, np.ndarray]],
    names: list[str],
    mask_ratio: float,
    path: Path,
) -> None:
    """Rows: images; columns: original, masked, then reconstruction and pasted for each model."""
    columns = [("original", None, None), (f"masked ({mask_ratio:.0%})", "adapted", "masked")]
    for model in ("start", "adapted"):
        columns += [
            (f"{model}: reconstruction", model, "reconstruction"),
            (f"{model}: + visible patches", model, "pasted"),
        ]
    rows = len(originals)
    fig, axes = new_grid((2.1 * len(columns), 2.3 * rows), rows, len(columns))
    for r in range(rows):
        for c, (title, model, panel) in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(
                originals[r] if model is None else panels[model][panel][r],
                cmap="gray",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(names[r][-24:], fontsize=7)
            if panel == "pasted":
                ax.set_xlabel(f"masked MSE {panels[model]['mse'][r]:.4f}", fontsize=7)
    save_figure(fig, path)
