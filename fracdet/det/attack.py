"""White-box ℓ∞ PGD on a YOLO detector itself, in the pixels the audit feeds it.

The audit shows the detector exactly the pixels the classifier saw (its letterboxed square in
[0, 1]); Ultralytics then letterboxes that image again to ``imgsz``. To attack the detector in
the same pixel space and ε as the classifier, :func:`letterbox` redoes Ultralytics' predict
preprocessing with torch ops (bilinear resize as ``cv2.INTER_LINEAR``, centred grey-114
padding, grey to three channels), so the gradient reaches the input's own pixels and the
perturbation lives there. The steps are :func:`fracdet.robust.pgd.pgd_attack`'s, the same
code the classifiers are attacked and adversarially trained with.

Two objectives (``DetAttackConfig.loss``):

* ``"scores"`` (default): the detector's fracture confidences from the raw head output
  (eval mode, before NMS; every class of a fracture detector counts as a fracture). On a
  fractured image the attack lowers the sum of the confidences above ``floor`` (a vanishing
  attack: every candidate box that could survive the score threshold loses score); on an
  intact image it raises the best confidence (a false alarm), as the classifiers' attack
  pushes every image away from its label. It needs no boxes, and it moves exactly what the
  audit's metrics read: box scores (recall at ``det_conf``, mAP's ranking) and the best box
  score (the image-level AUROC). Without labels every image gets the vanishing attack.
* ``"detection"``: Ultralytics' own training loss (``v8DetectionLoss``: box IoU, class BCE and
  DFL against the ground-truth boxes), maximised. It needs the boxes, and much of its gradient
  goes into box regression, which shifts boxes without removing them.

Measured on the demo's detector (YOLOv8n, imgsz 192, 32 phantoms of 96 px, ε = 4/255, 10
steps): clean mAP@0.5 / recall@0.25 / AUROC 0.727 / 0.710 / 0.977; ``"scores"`` 0.267 /
0.258 / 0.242; ``"detection"`` 0.360 / 0.548 / 0.762. The score loss is the stronger attack on
every number, hence the default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fracdet.data.formats import Box
from fracdet.errors import ConfigError
from fracdet.robust.pgd import PGDConfig, eval_mode, pgd_attack

__all__ = [
    "DET_ATTACK_LOSSES",
    "DetAttackConfig",
    "attack_detector",
    "detection_network",
    "detector_objective",
    "fracture_scores",
    "letterbox",
    "score_objective",
]

#: The objectives the detector attack can climb (see the module docstring).
DET_ATTACK_LOSSES = ("scores", "detection")
#: Ultralytics pads letterboxed images with this grey level.
PAD_VALUE = 114 / 255


@dataclass(frozen=True)
class DetAttackConfig:
    """ℓ∞ budget ``eps`` (pixels in [0, 1]), ``steps`` of ``step_size``, the detector's ``imgsz``,
    the objective, and the score ``floor`` below which a box is left alone."""

    eps: float = 4 / 255
    steps: int = 10
    step_size: float = 1 / 255
    random_start: bool = True
    imgsz: int = 640
    loss: str = "scores"
    floor: float = 0.001

    def __post_init__(self) -> None:
        checks = [
            (self.eps >= 0, f"eps must be >= 0, got {self.eps}"),
            (self.steps >= 0, f"steps must be >= 0, got {self.steps}"),
            (self.step_size > 0, f"step_size must be > 0, got {self.step_size}"),
            (self.imgsz >= 32, f"imgsz must be >= 32, got {self.imgsz}"),
            (
                self.loss in DET_ATTACK_LOSSES,
                f"detector attack loss must be one of {', '.join(DET_ATTACK_LOSSES)}, "
                f"got {self.loss!r}",
            ),
            (0.0 <= self.floor < 1.0, f"floor must be in [0, 1), got {self.floor}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def letterbox(images: torch.Tensor, imgsz: int) -> torch.Tensor:
    """Ultralytics' predict letterbox of ``(B, C, H, W)`` images in [0, 1], with torch ops.

    Resize by ``min(imgsz / H, imgsz / W)`` (bilinear, half-pixel centres, no antialiasing:
    ``cv2.INTER_LINEAR``), pad to ``imgsz`` square with grey 114 centred as Ultralytics rounds
    it, and repeat a grey channel to RGB. Differentiable in ``images``.
    """
    _, channels, height, width = images.shape
    r = min(imgsz / height, imgsz / width)
    new_w, new_h = max(round(width * r), 1), max(round(height * r), 1)
    out = images
    if (new_h, new_w) != (height, width):
        out = F.interpolate(out, size=(new_h, new_w), mode="bilinear", align_corners=False)
    dw, dh = (imgsz - new_w) / 2, (imgsz - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if top or bottom or left or right:
        out = F.pad(out, (left, right, top, bottom), value=PAD_VALUE)
    return out.expand(-1, 3, -1, -1) if channels == 1 else out


def detection_network(detector: Any) -> nn.Module:
    """The ``DetectionModel`` of an Ultralytics ``YOLO`` (or the network itself)."""
    from ultralytics.nn.tasks import BaseModel

    net = detector if isinstance(detector, BaseModel) else getattr(detector, "model", None)
    if not isinstance(net, BaseModel):
        raise ConfigError(f"not an Ultralytics detector: {type(detector).__name__}")
    return net


class _Scores(nn.Module):
    """Input pixels -> letterbox -> the detector's raw head -> best class confidence per anchor."""

    def __init__(self, net: nn.Module, imgsz: int) -> None:
        super().__init__()
        self.net, self.imgsz = net, imgsz
        self.train(net.training)  # pgd_attack's eval_mode restores this, not nn.Module's default

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        param = next(self.net.parameters())
        y = self.net(letterbox(images, self.imgsz).to(param.dtype))
        y = y[0] if isinstance(y, (tuple, list)) else y
        head = self.net.model[-1]
        y = y.to(torch.promote_types(y.dtype, torch.float32))  # half -> float, double stays
        if getattr(head, "end2end", False):  # (B, max_det, 6): x1 y1 x2 y2 score class
            return y[..., 4]
        return y[:, 4 : 4 + head.nc].amax(dim=1)  # (B, 4 + nc, anchors)


def fracture_scores(detector: Any, images: torch.Tensor, imgsz: int) -> torch.Tensor:
    """``(B, anchors)`` fracture confidences of the raw head (before NMS) on ``images``."""
    net = detection_network(detector)
    device = next(net.parameters()).device
    model = _Scores(net, imgsz)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return model(images.to(device)).cpu()
    finally:
        net.train(was_training)


def score_objective(scores: torch.Tensor, labels: torch.Tensor, floor: float) -> torch.Tensor:
    """What PGD climbs under ``loss="scores"``, summed over the batch.

    Label 1 (fractured): minus the sum of the confidences above ``floor`` (vanishing); label 0
    (intact): the best confidence (appearing). Summed, not averaged, so an image's step does not
    shrink with the batch.
    """
    vanish = -(scores * (scores > floor)).sum(dim=1)
    appear = scores.amax(dim=1)
    return torch.where(labels.to(scores.device) == 1, vanish, appear).sum()


class _DetectionLoss(nn.Module):
    """Input pixels -> letterbox -> Ultralytics' ``v8DetectionLoss`` against fixed targets."""

    def __init__(self, net: nn.Module, imgsz: int) -> None:
        super().__init__()
        from ultralytics.cfg import DEFAULT_CFG_DICT
        from ultralytics.utils import IterableSimpleNamespace

        self.net, self.imgsz = net, imgsz
        self.train(net.training)
        saved = getattr(net, "args", {})
        args = saved if isinstance(saved, dict) else vars(saved)
        net.args = IterableSimpleNamespace(**{**DEFAULT_CFG_DICT, **args})  # the loss gains
        try:
            self.criterion = net.init_criterion()
        finally:
            net.args = saved

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        param = next(self.net.parameters())
        return self.net(letterbox(images, self.imgsz).to(param.dtype))[1]  # the raw head dict


def _targets(boxes: Sequence[Sequence[Box]], shape: tuple[int, int], imgsz: int) -> dict:
    """Ultralytics' batch dict (normalised xywh in the letterboxed frame) of input-frame boxes."""
    height, width = shape
    r = min(imgsz / height, imgsz / width)
    pad_x = round((imgsz - max(round(width * r), 1)) / 2 - 0.1)
    pad_y = round((imgsz - max(round(height * r), 1)) / 2 - 0.1)
    idx, cls, xywh = [], [], []
    for k, image_boxes in enumerate(boxes):
        for b in image_boxes:
            x1, y1, x2, y2 = b.x1 * r + pad_x, b.y1 * r + pad_y, b.x2 * r + pad_x, b.y2 * r + pad_y
            idx.append(k)
            cls.append(b.label)
            xywh.append([(x1 + x2) / 2 / imgsz, (y1 + y2) / 2 / imgsz, (x2 - x1) / imgsz])
            xywh[-1].append((y2 - y1) / imgsz)
    return {
        "batch_idx": torch.tensor(idx, dtype=torch.float32),
        "cls": torch.tensor(cls, dtype=torch.float32).view(-1, 1),
        "bboxes": torch.tensor(xywh, dtype=torch.float32).view(-1, 4),
    }


def _objective(
    net: nn.Module,
    cfg: DetAttackConfig,
    n: int,
    shape: tuple[int, int],
    labels: torch.Tensor | None,
    boxes: Sequence[Sequence[Box]] | None,
) -> tuple[nn.Module, torch.Tensor, Callable[[Any, torch.Tensor], torch.Tensor]]:
    """The module PGD runs, its target and loss function for ``cfg.loss``."""
    device = next(net.parameters()).device
    if cfg.loss == "scores":
        target = torch.ones(n, device=device) if labels is None else labels.to(device).float()
        return (
            _Scores(net, cfg.imgsz),
            target,
            lambda s, y: score_objective(s, y, cfg.floor),
        )
    if boxes is None or len(boxes) != n:
        raise ConfigError("the detection-loss attack needs ground-truth boxes for every image")
    model = _DetectionLoss(net, cfg.imgsz)
    batch = {k: v.to(device) for k, v in _targets(boxes, shape, cfg.imgsz).items()}
    return model, torch.zeros(n, device=device), lambda p, _y: model.criterion(p, batch)[0].sum()


def detector_objective(
    detector: Any,
    images: torch.Tensor,
    cfg: DetAttackConfig = DetAttackConfig(),
    *,
    labels: torch.Tensor | None = None,
    boxes: Sequence[Sequence[Box]] | None = None,
) -> torch.Tensor:
    """The scalar the attack climbs on ``images`` (eval mode), differentiable in ``images``."""
    net = detection_network(detector)
    model, target, loss_fn = _objective(
        net, cfg, len(images), tuple(images.shape[-2:]), labels, boxes
    )
    with torch.enable_grad(), eval_mode(model):
        return loss_fn(model(images.to(next(net.parameters()).device)), target)


def attack_detector(
    detector: Any,
    images: torch.Tensor,
    cfg: DetAttackConfig = DetAttackConfig(),
    *,
    labels: torch.Tensor | None = None,
    boxes: Sequence[Sequence[Box]] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Adversarial versions of ``images`` ``(B, 1 or 3, H, W)`` in [0, 1] against the detector.

    ``labels`` (1 fractured, 0 intact; ``None``: all fractured) steer ``loss="scores"``;
    ``boxes`` (per image, in the input's pixel frame) are the targets ``loss="detection"``
    needs. Every result lies within ``eps`` (ℓ∞) of its image and in [0, 1] (asserted). The
    detector runs in eval mode and is restored; seeded through ``generator`` (random start).
    """
    if images.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got {tuple(images.shape)}")
    net = detection_network(detector)
    clean = images.detach().to(next(net.parameters()).device)
    model, target, loss_fn = _objective(
        net, cfg, len(clean), tuple(clean.shape[-2:]), labels, boxes
    )
    pgd = PGDConfig(cfg.eps, cfg.steps, cfg.step_size, cfg.random_start)
    with torch.enable_grad():
        adv = pgd_attack(model, clean, target, pgd, loss_fn=loss_fn, generator=generator)
    linf = float((adv - clean).abs().amax()) if len(adv) else 0.0
    assert linf <= cfg.eps + 1e-6, f"detector attack left the ε ball: {linf} > {cfg.eps}"
    assert len(adv) == 0 or (adv.min() >= 0 and adv.max() <= 1), "attacked pixels outside [0, 1]"
    return adv.to(images.device)
