"""The end of a ``train-cls`` run: its best weights calibrated, its report written.

The temperature and the decision threshold are fitted on the validation split and stored in
the ``best`` checkpoint, so eval-cls, predict and the audit use the same operating point;
``train_report.json`` says how the run went, ``MODEL_CARD.md`` + ``model_card.json`` what the
model is (:mod:`fracdet.cls.card`).
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fracdet.cls.calibration import apply_temperature
from fracdet.cls.card import card_from_classifier_checkpoint
from fracdet.cls.checkpoint import save_classifier
from fracdet.cls.data import LabelledSplit
from fracdet.cls.inference import Predictions
from fracdet.cls.loop import skipped_rows, write_train_report
from fracdet.cls.train_state import TrainState
from fracdet.fsutil import atomic_write
from fracdet.provenance import versions
from fracdet.report.model_card import write_model_card

__all__ = ["TrainResult", "finish_run"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where the run went and how it ended."""

    run_dir: Path
    best: Path
    last: Path
    best_epoch: int
    best_score: float
    threshold: float
    temperature: float
    history: list[dict[str, Any]]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"best epoch {self.best_epoch}: val score {self.best_score:.4f}; threshold "
            f"{self.threshold:.3f}, "
            f"temperature {self.temperature:.3f} -> {self.best}"
        )


def finish_run(
    cfg,
    model,
    val: LabelledSplit,
    predict_val: Callable[..., Predictions],
    out: Path,
    state: TrainState,
    train: LabelledSplit,
) -> TrainResult:
    """Reload the best weights; fit temperature and threshold on validation (``predict_val``:
    the trainer's validation pass over ``model``); store them in ``best``.
    """
    from safetensors.torch import load_file

    from fracdet.cls.calibration import fit_temperature
    from fracdet.cls.checkpoint import load_classifier
    from fracdet.cls.metrics import binary_metrics, tune_threshold

    best_path = out / "best.safetensors"
    if not best_path.is_file():  # validation score was never defined: keep the last weights
        for name in ("safetensors", "json"):
            atomic_write(
                out / f"best.{name}", functools.partial(shutil.copyfile, out / f"last.{name}")
            )
    _, meta = load_classifier(best_path)
    model.backbone.load_state_dict(load_file(str(best_path)))
    preds = predict_val(description="calibrate")
    temperature, threshold, val_metrics = 1.0, 0.5, dict(meta.metrics)
    if len(preds.labels) and len(np.unique(preds.labels)) > 1:
        temperature = float(fit_temperature(preds.logits, preds.labels))
        if meta.binary:
            probs = apply_temperature(preds.logits, temperature)
            if (
                cfg.threshold_method != "none"
            ):  # none: 0.5, the two-class argmax (the robust-transfer study's decision)
                threshold = float(
                    tune_threshold(
                        preds.labels,
                        probs,
                        method=cfg.threshold_method,
                        target=cfg.threshold_target,
                    )
                )
            val_metrics.update(
                {
                    f"val_{k}": v
                    for k, v in binary_metrics(preds.labels, probs, threshold=threshold).items()
                    if isinstance(v, (int, float)) and v is not None
                }
            )
    else:
        logger.warning(
            "validation split holds one class only: threshold stays 0.5 and temperature 1.0"
        )
    save_classifier(
        model,
        replace(meta, threshold=threshold, temperature=temperature, metrics=val_metrics),
        best_path,
    )
    skipped = skipped_rows(state) + train.skipped + val.skipped
    write_train_report(
        logger,
        out,
        cfg,
        state,
        skipped=skipped,
        versions=versions(),
        data_hash=meta.data_hash,
        best_score=state.best_score,
        threshold=threshold,
        temperature=temperature,
    )
    # the card reads the files just written (best.json, train_report.json): one source of truth
    write_model_card(out, card_from_classifier_checkpoint(best_path))
    return TrainResult(
        out,
        best_path,
        out / "last.safetensors",
        state.best_epoch + 1,
        state.best_score,
        threshold,
        temperature,
        state.history,
        skipped,
    )
