"""Removing pixels without leaving a trace: ROAD's noisy linear imputation, seeded and batched.

Replacing pixels by a constant (black, the mean) draws an edge the classifier can react to,
so a drop in its score may measure the edge rather than the lost evidence. ROAD ("A
consistent and efficient evaluation strategy for attribution methods", Rong et al., ICML
2022) fills each removed pixel with the weighted mean of its neighbours (a sparse linear
system) plus a little noise. The faithfulness check (deletion/insertion by attribution rank)
and the causal box test (remove the fracture box, or a matched control box) both remove
pixels through :func:`impute`, which runs pytorch-grad-cam's
:class:`~pytorch_grad_cam.metrics.road.NoisyLinearImputer` image by image with its noise
drawn from a seeded generator (the library draws from torch's global one).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

__all__ = ["impute", "ROAD_NOISE"]

#: the noise ROAD adds to imputed pixels (pytorch-grad-cam's default), in [0, 1] pixel units
ROAD_NOISE = 0.01


def impute(
    images: torch.Tensor,
    remove: np.ndarray | torch.Tensor,
    *,
    seed: int = 0,
    noise: float = ROAD_NOISE,
) -> torch.Tensor:
    """``images`` ``(B, C, H, W)`` in [0, 1] with the ``remove`` pixels ``(B, H, W)`` imputed.

    Each image gets its own seeded noise (``seed + k`` for the k-th), so a result does not
    depend on the batch it came in nor on torch's global random state. Values are clipped to
    [0, 1]; pixels not removed are returned unchanged (bit for bit).
    """
    remove = torch.as_tensor(np.asarray(remove), dtype=torch.bool)
    if images.ndim != 4 or remove.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"images must be (B, C, H, W) and remove (B, H, W): got {tuple(images.shape)} "
            f"and {tuple(remove.shape)}"
        )
    imputer = NoisyLinearImputer(noise=noise)
    source = images.detach().float().cpu()
    out = source.clone()
    for k in range(len(source)):
        if not remove[k].any():
            continue
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + k)
            filled = imputer(source[k], (~remove[k]).float())
        out[k] = torch.where(remove[k], filled.clamp(0.0, 1.0), source[k])
    return out.to(device=images.device, dtype=images.dtype)
