"""Remove a region and see what the classifier loses: the causal box test's instrument.

"Removing the fracture removes the call" answers the product's question without any
attribution map. A region (the fracture boxes, the detector's boxes, a suspected shortcut
marker) is removed by ROAD's noisy linear imputation (:func:`fracdet.explain.imputation.impute`),
and the classifier's probability before and after is compared with the same removal of
*matched controls*: the very same pixel set (same size, same shape, several boxes moved
together) shifted elsewhere on the image. A shift is a control when the moved region lies
inside the image content (never the letterbox padding, where imputing grey padding from
grey padding removes nothing) and touches no pixel of ``avoid`` (the fracture boxes and
any named region) nor of the region itself. Controls are drawn without replacement from a
generator seeded per image, uniformly among the 10% of such integer shifts whose mean grey
level under the moved region is nearest the region's own (bone is matched with bone, not
with air; at least as many candidates as controls), so a drop under the region minus the
mean drop under its controls measures what the region holds beyond what a patch of that
shape and brightness holds.

Nothing here knows the audit: a ``predict`` callable, images, masks, content rectangles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.signal import correlate

from fracdet.explain.imputation import impute

__all__ = ["AblationResult", "MATCH_SHARE", "ablate_regions", "control_shifts", "shift_mask"]

#: ``(top, left, height, width)`` of the image content in the model's frame
Content = tuple[int, int, int, int]
#: controls are drawn among this share of the free positions nearest in mean grey level
MATCH_SHARE = 0.1


def shift_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved down by ``dy`` and right by ``dx`` pixels (pixels moved out are lost)."""
    out = np.zeros_like(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    ys, xs = ys + dy, xs + dx
    keep = (ys >= 0) & (ys < mask.shape[0]) & (xs >= 0) & (xs < mask.shape[1])
    out[ys[keep], xs[keep]] = True
    return out


def control_shifts(
    mask: np.ndarray,
    *,
    content: Content,
    avoid: np.ndarray | None,
    n: int,
    rng: np.random.Generator,
    image: np.ndarray | None = None,
    nearest: float = MATCH_SHARE,
) -> list[tuple[int, int]]:
    """Up to ``n`` distinct shifts ``(dy, dx)`` that move all of ``mask`` inside ``content``
    without touching ``avoid`` nor ``mask`` itself; fewer when fewer exist (none: ``[]``).

    With ``image`` ``(H, W)`` the draw is among the ``nearest`` share of free shifts (at least
    ``n``) whose mean grey level under the moved region is closest to the region's own, so
    a box over bone is matched with boxes over bone, not over air.
    """
    ys, xs = np.nonzero(mask)
    if not ys.size or n < 1:
        return []
    y0, x0 = int(ys.min()), int(xs.min())
    crop = mask[y0 : ys.max() + 1, x0 : xs.max() + 1].astype(np.float64)
    blocked = mask | avoid if avoid is not None else mask
    # overlap[r, c]: pixels of the region placed with its corner at (r, c) that hit `blocked`
    overlap = correlate(blocked.astype(np.float64), crop, mode="valid")
    top, left, h, w = content
    bh, bw = crop.shape
    free = np.zeros_like(overlap, dtype=bool)
    rows = slice(max(top, 0), max(top + h - bh + 1, 0))
    cols = slice(max(left, 0), max(left + w - bw + 1, 0))
    free[rows, cols] = overlap[rows, cols] < 0.5
    corners = np.flatnonzero(free)
    if not corners.size:
        return []
    if image is not None:
        grey = correlate(image.astype(np.float64), crop, mode="valid").ravel()[corners]
        gap = np.abs(grey / crop.sum() - image[mask].mean())
        pool = max(n, int(np.ceil(nearest * corners.size)))
        corners = corners[np.argsort(gap, kind="stable")[:pool]]
    chosen = rng.choice(corners, size=min(n, corners.size), replace=False)
    r, c = np.unravel_index(chosen, free.shape)
    return [(int(a) - y0, int(b) - x0) for a, b in zip(r, c, strict=True)]


@dataclass(frozen=True)
class AblationResult:
    """Probabilities before and after removing each image's region and its controls.

    ``controls[i, k]`` is NaN where image ``i`` had fewer than ``k + 1`` control positions;
    ``shifts[i]`` are its controls' shifts; ``images[i]`` (when kept) are its variants:
    the region removed, then each control removed.
    """

    base: np.ndarray
    ablated: np.ndarray
    controls: np.ndarray
    shifts: list[list[tuple[int, int]]]
    images: list[torch.Tensor] | None = field(default=None, repr=False)

    @property
    def drop(self) -> np.ndarray:
        """``base - ablated`` per image: what removing the region took away."""
        return self.base - self.ablated

    @property
    def control_drop(self) -> np.ndarray:
        """The mean drop over each image's controls (NaN for an image without a control)."""
        drops = self.base[:, None] - self.controls
        counts = np.sum(~np.isnan(drops), axis=1)
        sums = np.nansum(drops, axis=1)
        return np.divide(sums, counts, out=np.full(len(sums), np.nan), where=counts > 0)


def ablate_regions(
    predict: Callable[[torch.Tensor], np.ndarray],
    images: torch.Tensor,
    masks: Sequence[np.ndarray],
    *,
    contents: Sequence[Content],
    avoid: Sequence[np.ndarray | None] | None = None,
    n_controls: int = 4,
    seeds: Sequence[int | Sequence[int]],
    match_grey: bool = True,
    keep_images: bool = False,
) -> AblationResult:
    """Remove ``masks[i]`` from ``images[i]`` ``(N, C, H, W)`` and ``n_controls`` matched
    controls; ``predict`` maps a batch to probabilities ``(B,)``.

    ``seeds[i]`` seeds image ``i``'s control positions and imputation noise, so an image's
    numbers do not depend on which other images are ablated with it. ``match_grey``: draw
    the controls among the positions nearest the region in mean grey level
    (:func:`control_shifts`).
    """
    n = len(images)
    if not (len(masks) == len(contents) == len(seeds) == n):
        raise ValueError(
            f"{n} images but {len(masks)} masks, {len(contents)} contents, {len(seeds)} seeds"
        )
    base = np.asarray(predict(images), dtype=np.float64).reshape(n)
    ablated = np.full(n, np.nan)
    controls = np.full((n, n_controls), np.nan)
    shifts: list[list[tuple[int, int]]] = []
    kept: list[torch.Tensor] = []
    for i in range(n):
        rng = np.random.default_rng(seeds[i])
        moves = control_shifts(
            masks[i],
            content=contents[i],
            avoid=None if avoid is None else avoid[i],
            n=n_controls,
            rng=rng,
            image=images[i].float().mean(dim=0).cpu().numpy() if match_grey else None,
        )
        shifts.append(moves)
        removed = np.stack([masks[i]] + [shift_mask(masks[i], dy, dx) for dy, dx in moves])
        variants = impute(
            images[i : i + 1].expand(len(removed), *images.shape[1:]),
            removed,
            seed=int(rng.integers(2**31 - 1024)),
        )
        p = np.asarray(predict(variants), dtype=np.float64).reshape(len(removed))
        ablated[i], controls[i, : len(moves)] = p[0], p[1:]
        if keep_images:
            kept.append(variants)
    return AblationResult(base, ablated, controls, shifts, kept if keep_images else None)
