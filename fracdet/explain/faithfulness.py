"""Do the maps rank pixels by what the model uses? Deletion by attribution rank, ROAD-style.

A map is faithful when removing the pixels it ranks most relevant lowers the model's score
quickly (MoRF, most relevant first) and removing those it ranks least relevant barely moves
it (LeRF). ROAD ("A consistent and efficient evaluation strategy for attribution methods",
Rong et al., ICML 2022) removes pixels by noisy linear imputation
(:func:`~fracdet.explain.imputation.impute`) rather than a constant, so the drop measures
the lost evidence, not a new edge, and scores a method by the area between its two curves,
``LeRF - MoRF`` averaged over the removed fractions (pytorch-grad-cam's ``ROADCombined``
returns half of it). A random pixel order, seeded, is the baseline every method must beat.

Why not pytorch-grad-cam's ``ROADMostRelevantFirst`` / ``ROADLeastRelevantFirst`` directly
(they apply: a one-logit model works through a score wrapper, and ``tests/test_faithfulness``
holds these curves equal to theirs on maps without ties, noise-free or under one seed): they
cut at a percentile and remove every pixel on the far side of it, ties included, so on a map
with ties (Grad-CAM is zero over large regions) a "10%" LeRF step removes every zero pixel
at once, often most of the image; they draw the imputation noise
from torch's global generator; and they run one forward per image and fraction. Here each
step removes exactly ``round(x% · H · W)`` pixels by rank, ties broken in a seeded random
order (their expected value), each (image, fraction, order) is imputed once, and the
forwards are batched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fracdet.explain.imputation import ROAD_NOISE, impute

__all__ = [
    "DEFAULT_PERCENTAGES",
    "RANDOM",
    "FaithfulnessCurves",
    "deletion_curves",
    "relevance_order",
    "removal_masks",
]

#: the share of pixels removed at each step (percent); 0 (the untouched image) is added
DEFAULT_PERCENTAGES = (20.0, 40.0, 60.0, 80.0)
#: the name of the random-order baseline among the methods' curves
RANDOM = "random"

#: images per forward when scoring imputed inputs
_SCORE_BATCH = 64


@dataclass(frozen=True)
class FaithfulnessCurves:
    """The score of every image as pixels are removed, per method (and :data:`RANDOM`).

    ``percentages``: the removed shares, ``0`` first; ``morf[m]`` / ``lerf[m]``: ``(N, P)``
    scores (column 0 is the untouched image's score, the same for every curve).
    """

    percentages: tuple[float, ...]
    morf: dict[str, np.ndarray]
    lerf: dict[str, np.ndarray]

    @property
    def methods(self) -> list[str]:
        return list(self.morf)

    def area(self, method: str) -> np.ndarray:
        """Per image, ``LeRF - MoRF`` averaged over the removal steps (0% left out):
        larger is more faithful; about 0 for a random order."""
        return (self.lerf[method][:, 1:] - self.morf[method][:, 1:]).mean(axis=1)


def relevance_order(relevance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices of one ``(H, W)`` map, most relevant (largest value) first.

    Tied values come in a random order drawn from ``rng``, so a flat region of the map is
    removed as a random subset of itself rather than row by row.
    """
    values = np.asarray(relevance, dtype=np.float64).ravel()
    if not np.isfinite(values).all():
        raise ValueError("an attribution map holds NaN or infinite values")
    return np.lexsort((rng.random(values.size), -values))


def removal_masks(
    order: np.ndarray, shape: tuple[int, int], percentages: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """``(P, H, W)`` boolean masks of the pixels MoRF and LeRF remove at each percentage.

    MoRF removes the first ``round(x% · H · W)`` pixels of ``order``, LeRF the last as many.
    """
    n = int(np.prod(shape))
    morf = np.zeros((len(percentages), n), dtype=bool)
    lerf = np.zeros_like(morf)
    for step, share in enumerate(percentages):
        k = int(round(share / 100.0 * n))
        morf[step, order[:k]] = True
        lerf[step, order[n - k :]] = True
    return morf.reshape(-1, *shape), lerf.reshape(-1, *shape)


def _check(
    images: torch.Tensor, maps: Mapping[str, np.ndarray], percentages: Sequence[float]
) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    expected = (images.shape[0], *images.shape[2:])
    for method, m in maps.items():
        if method == RANDOM:
            raise ValueError(f"{RANDOM!r} names the random baseline: rename that method")
        if np.shape(m) != expected:
            raise ValueError(f"maps[{method!r}] must be {expected}, got {np.shape(m)}")
    if not percentages or not all(0 < p < 100 for p in percentages):
        raise ValueError(f"percentages must be in (0, 100), got {list(percentages)}")
    if list(percentages) != sorted(set(percentages)):
        raise ValueError(f"percentages must increase, got {list(percentages)}")


def _scores(score: Callable[[torch.Tensor], np.ndarray], images: torch.Tensor) -> np.ndarray:
    parts = [score(images[i : i + _SCORE_BATCH]) for i in range(0, len(images), _SCORE_BATCH)]
    return np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1) for p in parts])


def deletion_curves(
    score: Callable[[torch.Tensor], np.ndarray],
    images: torch.Tensor,
    maps: Mapping[str, np.ndarray],
    *,
    percentages: Sequence[float] = DEFAULT_PERCENTAGES,
    seed: int = 0,
    noise: float = ROAD_NOISE,
) -> FaithfulnessCurves:
    """MoRF and LeRF curves of ``score`` for each map of ``maps`` and a random order.

    ``score(images)`` gives one number per image (the fracture probability); ``images``
    ``(N, C, H, W)`` in [0, 1]; ``maps[method]`` ``(N, H, W)``, larger = more relevant.
    Every image's random order and tie-breaks come from ``(seed, image)``, and its
    imputation noise from ``seed + image`` (as :func:`impute` seeds it), so one method's
    curves do not depend on which other methods run beside it.
    """
    _check(images, maps, percentages)
    n, shape = images.shape[0], tuple(images.shape[2:])
    steps = len(percentages)
    tie_rngs = [np.random.default_rng((seed, i, 1)) for i in range(n)]
    orders = {
        method: [relevance_order(m[i], tie_rngs[i]) for i in range(n)] for method, m in maps.items()
    }
    orders[RANDOM] = [
        np.random.default_rng((seed, i, 0)).permutation(int(np.prod(shape))) for i in range(n)
    ]
    original = _scores(score, images)
    morf: dict[str, np.ndarray] = {}
    lerf: dict[str, np.ndarray] = {}
    for method, per_image in orders.items():
        masks = [removal_masks(order, shape, percentages) for order in per_image]
        imputed = []
        for direction in (0, 1):
            for step in range(steps):
                remove = np.stack([m[direction][step] for m in masks])
                imputed.append(impute(images, remove, seed=seed, noise=noise))
        # (direction, step, image) -> (image, direction, step)
        found = _scores(score, torch.cat(imputed)).reshape(2, steps, n).transpose(2, 0, 1)
        morf[method] = np.column_stack([original, found[:, 0]])
        lerf[method] = np.column_stack([original, found[:, 1]])
    return FaithfulnessCurves((0.0, *map(float, percentages)), morf, lerf)
