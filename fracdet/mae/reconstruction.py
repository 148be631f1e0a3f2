"""The masked-patch error of an MAE on fixed masks: one number for validation and for mae-show.

Random masks make the error of two evaluations differ by chance; here each image's mask is
drawn from (seed, image index), so two models, two epochs or two runs are scored on exactly
the same hidden patches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from fracdet.data.datasets import item_seed
from fracdet.log import progress
from fracdet.mae.model import PixelMAE
from fracdet.runtime import autocast

__all__ = ["MaskedError", "fixed_noise", "masked_error", "per_image_mse"]

_MASK_STREAM = (
    -1
)  # item_seed's "epoch" slot: masks never coincide with an epoch's augmentation seeds


@dataclass
class MaskedError:
    """Means over images: ``loss`` (the training loss: MSE of normalised pixels on masked
    patches) and ``mse`` (MSE of grey levels in [0, 1] on masked patches)."""

    loss: float
    mse: float
    images: int
    failures: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, float | int]:
        return {"loss": self.loss, "mse": self.mse, "images": self.images}


def fixed_noise(indices: Iterable[int], num_patches: int, seed: int) -> torch.Tensor:
    """Masking noise ``(B, num_patches)`` for dataset ``indices``: the same per image, whatever
    the batch.
    """
    rows = [
        torch.rand(
            num_patches,
            generator=torch.Generator().manual_seed(item_seed(seed, _MASK_STREAM, int(i))),
        )
        for i in indices
    ]
    return torch.stack(rows)


def per_image_mse(
    model: PixelMAE, images: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Grey-level MSE ``(B,)`` over each image's masked patches."""
    pixel_mask = model.patch_mask(mask)
    error = (model.to_pixels(logits) - images.float()) ** 2 * pixel_mask
    return error.sum(dim=(1, 2, 3)) / pixel_mask.sum(dim=(1, 2, 3)).clamp_min(1)


@torch.no_grad()
def masked_error(
    model: PixelMAE,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: str = "fp32",
    seed: int = 0,
    description: str = "validate",
) -> MaskedError:
    """Mean masked-patch error over ``loader`` (batches from ``collate_skipping_failures``)."""
    was_training = model.training
    model.eval()
    loss_sum = mse_sum = 0.0
    count, failures = 0, []
    try:
        for batch in progress(loader, description, total=len(loader)):
            failures.extend(batch.failures)
            if len(batch) == 0:
                continue
            images = batch.images.to(device)
            noise = fixed_noise(batch.indices.tolist(), model.num_patches, seed).to(device)
            with autocast(device, precision):
                out = model(images, noise=noise)
            # every image hides the same number of patches, so the batch mean weighs each image
            # equally
            loss_sum += float(out.loss.float()) * len(batch)
            mse_sum += float(per_image_mse(model, images, out.logits, out.mask).sum())
            count += len(batch)
    finally:
        model.train(was_training)
    if count == 0:
        return MaskedError(float("nan"), float("nan"), 0, failures)
    return MaskedError(loss_sum / count, mse_sum / count, count, failures)
