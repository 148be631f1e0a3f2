"""Cascading model-parameter randomisation: Adebayo et al., 2018, "Sanity checks for saliency maps".

A map that explains a model must change when the model's learned weights are destroyed. The
test randomises the classifier from the head down, block by block, and compares each method's
maps on every randomised copy with its maps on the trained model. A method whose maps stay
alike (an edge detector of the image does, whatever the weights) shows the image, not the
model.

Blocks (:func:`parameter_blocks`), output end first:

- timm models (found anywhere inside the model, e.g. the backbone of
  :class:`~fracdet.cls.model.PixelClassifier`): timm's own layer groups, the ones its
  layer-wise learning-rate decay uses (``group_matcher(coarse=False)`` through
  ``timm.models.group_parameters``): the classifier head, then each block in reverse (a
  ResNet's ``layer4.1`` … ``layer1.0``, an EfficientNet's ``blocks.6.0`` … ``blocks.0.0``, a
  ViT's ``blocks.11`` … ``blocks.0``; a final norm or 1x1 head convolution joins the last
  block), then the stem.
- any other model: the children that hold parameters of the first module with more than one
  such child, in reverse registration order, and that module's own parameters as the stem.

Every parameter belongs to exactly one block (checked).

Randomised means drawn again from the initial distribution, not noise added to the trained
weights: every module owning a parameter of the block runs its ``reset_parameters()``
(PyTorch's init: Kaiming-uniform convolutions and linear layers; BatchNorm back to weight 1,
bias 0 and fresh running statistics, so eval-mode BatchNorm is the identity); a parameter whose
module has no ``reset_parameters`` (a ViT's class token and position embedding, LayerScale) is
drawn from a normal of std 0.02 truncated at ±2 std (timm's ViT init). Draws come from torch's
CPU generator seeded by ``(seed, block)`` and are copied onto the model's device, so a step's
weights are the same on any device and for any choice of steps: step ``j`` is step ``j - 1``
with block ``j`` re-drawn.

Similarity of a map to the original (:func:`map_similarity`), as Adebayo et al. measure it:
Spearman's rank correlation of ``|a|`` (:func:`~fracdet.explain.localization.rank_correlation`;
a map that became constant while the original was not has no ranking left in common with it
and scores 0), SSIM of the maps normalised to [0, 1] (``|a|`` divided by its range after the
minimum is removed; ``skimage.metrics.structural_similarity`` with ``data_range=1``), and the
share of the original's top-25% pixels still in the top 25%
(:func:`~fracdet.explain.localization.topk_intersection`). The audit's verdict on these
numbers (which methods pass) is :mod:`fracdet.audit.check_sanity`'s.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fracdet.explain.localization import RankedMap, rank_correlation, topk_intersection

__all__ = [
    "Block",
    "RandomizedStep",
    "parameter_blocks",
    "randomize_block",
    "cascade_steps",
    "cascading_randomization",
    "normalize_map",
    "map_similarity",
    "SIMILARITIES",
]

logger = logging.getLogger(__name__)

#: the similarities :func:`map_similarity` returns, by key
SIMILARITIES = ("spearman", "ssim", "top25")

#: std of the truncated normal a parameter without ``reset_parameters`` is drawn from
_FALLBACK_STD = 0.02


@dataclass(frozen=True)
class Block:
    """A group of parameters randomised together: its display name and parameter names."""

    name: str
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class RandomizedStep:
    """One step of the cascade: ``step`` blocks randomised (0: the original), the last one named."""

    step: int
    block: str
    model: nn.Module


def _timm_owner(model: nn.Module) -> tuple[str, nn.Module] | None:
    for name, module in model.named_modules():
        if callable(getattr(module, "group_matcher", None)):
            return name, module
    return None


def _display_name(names: Sequence[str]) -> str:
    """The modules a group spans: one common prefix, or each top-level part's prefix joined."""
    paths = [n.split(".") for n in names]
    common: list[str] = []
    for parts in zip(*paths, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    if common and len(common) < min(len(p) for p in paths):
        return ".".join(common)
    tops: dict[str, list[list[str]]] = {}
    for parts in paths:
        tops.setdefault(parts[0], []).append(parts)
    pieces = []
    for top, members in tops.items():
        shared = [top]
        for parts in zip(*(m[1:] for m in members), strict=False):
            if len(set(parts)) != 1 or len(shared) + 1 >= min(len(m) for m in members):
                break
            shared.append(parts[0])
        pieces.append(".".join(shared))
    return "+".join(pieces)


def _groups_from_children(model: nn.Module) -> tuple[str, list[list[str]]]:
    """The first module with several parameterised children: its own parameters, then each
    child's."""
    prefix, node = "", model
    while True:
        children = [(n, c) for n, c in node.named_children() if any(True for _ in c.parameters())]
        own = [n for n, _ in node.named_parameters(recurse=False)]
        if len(children) == 1 and not own:
            name, node = children[0]
            prefix = f"{prefix}{name}."
            continue
        groups = [own] if own else []
        groups += [[f"{n}.{p}" for p, _ in c.named_parameters()] for n, c in children]
        return prefix, groups


def parameter_blocks(model: nn.Module) -> list[Block]:
    """The model's parameter blocks, output end first (head, blocks in reverse, stem).

    ``ValueError`` if the model has no parameters; ``RuntimeError`` if the grouping missed a
    parameter or counted one twice (a model this rule does not understand).
    """
    owner = _timm_owner(model)
    if owner is not None:
        from timm.models import group_parameters

        name, module = owner
        prefix = f"{name}." if name else ""
        grouped = group_parameters(module, module.group_matcher(coarse=False))
        groups = [list(grouped[k]) for k in sorted(grouped)]
    else:
        prefix, groups = _groups_from_children(model)
    blocks = [
        Block(_display_name(g), tuple(f"{prefix}{p}" for p in g)) for g in reversed(groups) if g
    ]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no parameters to randomise")
    listed = [p for b in blocks for p in b.parameters]
    every = [n for n, _ in model.named_parameters()]
    if sorted(listed) != sorted(every):
        missing = sorted(set(every) - set(listed))[:5]
        twice = sorted({p for p in listed if listed.count(p) > 1})[:5]
        raise RuntimeError(
            f"parameter blocks of {type(model).__name__} do not cover each parameter once "
            f"(missing {missing}, twice {twice})"
        )
    return blocks


def _seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


@torch.no_grad()
def randomize_block(model: nn.Module, block: Block, *, seed: int) -> None:
    """Re-draw ``block``'s parameters in place from their initial distribution (see the module)."""
    wanted = set(block.parameters)
    done: set[str] = set()
    for k, (name, module) in enumerate(model.named_modules()):
        own = [
            f"{name}.{p}" if name else p
            for p, _ in module.named_parameters(recurse=False)
            if (f"{name}.{p}" if name else p) in wanted
        ]
        if not own or not callable(getattr(module, "reset_parameters", None)):
            continue
        # reset a CPU copy under a seeded CPU generator: the same draws on every device
        fresh = copy.deepcopy(module).to("cpu")
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(_seed(seed, k))
            fresh.reset_parameters()
        module.load_state_dict(fresh.state_dict())
        done.update(own)
    params = dict(model.named_parameters())
    for k, name in enumerate(sorted(wanted - done)):
        generator = torch.Generator().manual_seed(_seed(seed, 1 << 20, k))
        values = torch.empty(params[name].shape, dtype=torch.float32)
        nn.init.trunc_normal_(
            values,
            std=_FALLBACK_STD,
            a=-2 * _FALLBACK_STD,
            b=2 * _FALLBACK_STD,
            generator=generator,
        )
        params[name].copy_(values)


def cascade_steps(n_blocks: int, max_steps: int | None = None) -> list[int]:
    """The steps to evaluate: 0 and at most ``max_steps`` of ``1..n_blocks``, spread evenly.

    The first block alone (the head) and the fully randomised model are always among them.
    """
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    if max_steps is None or max_steps >= n_blocks:
        return list(range(n_blocks + 1))
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if max_steps == 1:
        return [0, n_blocks]
    chosen = np.unique(np.round(np.linspace(1, n_blocks, max_steps)).astype(int))
    return [0, *chosen.tolist()]


def cascading_randomization(
    model: nn.Module, *, seed: int = 0, steps: Sequence[int] | None = None
) -> Iterator[RandomizedStep]:
    """Deep copies of ``model`` with its top ``j`` blocks randomised, for ``j`` in ``steps``.

    ``steps`` (default: every step, ``0..len(blocks)``) are counts of blocks from the head
    down; step 0 is an untouched copy. ``model`` itself is never changed. Each copy is
    yielded in eval mode.
    """
    blocks = parameter_blocks(model)
    wanted = sorted(set(range(len(blocks) + 1) if steps is None else steps))
    if wanted and not 0 <= wanted[0] <= wanted[-1] <= len(blocks):
        raise ValueError(f"steps must lie in 0..{len(blocks)}, got {list(steps or [])}")
    work = copy.deepcopy(model).eval()
    for j in range(wanted[-1] + 1 if wanted else 0):
        if j > 0:
            randomize_block(work, blocks[j - 1], seed=_seed(seed, j))
        if j in wanted:
            yield RandomizedStep(
                j, "original" if j == 0 else blocks[j - 1].name, copy.deepcopy(work)
            )


def normalize_map(attr: np.ndarray) -> np.ndarray:
    """``|a|`` scaled to [0, 1] (minimum to 0, maximum to 1); a constant map becomes zeros."""
    values = np.abs(np.asarray(attr, dtype=np.float64))
    low, span = values.min(), np.ptp(values)
    return (values - low) / span if span > 0 else np.zeros_like(values)


def map_similarity(original: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Spearman of ``|a|``, SSIM of the normalised maps and top-25% intersection of two maps.

    Spearman is 0 where exactly one map is constant (no ranking in common) and ``nan`` where
    both are.
    """
    from skimage.metrics import structural_similarity

    a, b = np.abs(np.asarray(original, np.float64)), np.abs(np.asarray(other, np.float64))
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"two (H, W) maps of one shape needed, got {a.shape} and {b.shape}")
    flat_a, flat_b = np.ptp(a) == 0, np.ptp(b) == 0
    if flat_a and flat_b:
        spearman = float("nan")
    elif flat_a or flat_b:
        spearman = 0.0
    else:
        spearman = rank_correlation(RankedMap.of(a), RankedMap.of(b))
    # SSIM's default 7x7 window needs maps at least 7 pixels on a side
    window = min(7, *(s if s % 2 else s - 1 for s in a.shape))
    ssim = structural_similarity(
        normalize_map(a), normalize_map(b), data_range=1.0, win_size=max(window, 3)
    )
    return {
        "spearman": spearman,
        "ssim": float(ssim),
        "top25": topk_intersection(a, b, p=25),
    }
