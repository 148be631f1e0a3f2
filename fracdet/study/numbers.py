"""The study's measured numbers, read from the files each stage wrote (one dict for the page)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fracdet.audit.answer import sane_methods
from fracdet.audit.schema import CONDITIONS, input_key
from fracdet.stages import read_stage_json

__all__ = ["study_numbers"]


def study_numbers(folders: Mapping[str, Path]) -> dict[str, Any]:
    """The measured numbers, read from the files each stage wrote."""
    audit = read_stage_json(folders["audit"] / "metrics.json")
    det = read_stage_json(folders["det"] / "eval" / "det_metrics.json")
    coco, ultra = det.get("coco") or {}, det.get("ultralytics") or {}
    numbers: dict[str, Any] = {
        "splits": {
            name: (
                read_stage_json(folders[name] / "dataset" / "convert_report.json").get("split")
                or {}
            ).get("counts_per_split_and_class")
            for name in ("data", "data-det")
        },
        "notes": [
            p
            for p in read_stage_json(folders["data"] / "dataset" / "convert_report.json").get(
                "problems", []
            )
            if p.get("kind") == "image_note"
        ],
        "detector": {
            "n_images": coco.get("n_images"),
            "precision": ultra.get("precision"),
            "recall": ultra.get("recall"),
            "map_50": coco.get("map_50"),
            "map_50_ci95": coco.get("map_50_ci95"),
            "map_50_95": coco.get("map_50_95"),
            "map_50_95_ci95": coco.get("map_50_95_ci95"),
            "image_auroc": (det.get("image_level") or {}).get("auroc"),
        },
        "classifiers": {},
        "agreement": audit.get("agreement") or {},
        "groups": audit.get("groups") or {},
        # every fractured val + test image: the shortcut check with more hardware images than
        # test alone holds
        "heldout_groups": (
            read_stage_json(folders["audit-heldout"] / "metrics.json")
            if "audit-heldout" in folders
            else {}
        ).get("groups")
        or {},
        "focus_percentile": audit.get("focus_percentile", 25.0),
        "methods": audit.get("methods", []),
        # the test audit's randomisation check per classifier ({"passed", "failed"} method
        # codes; None: not run): the hardware sentence counts only methods that pass it
        "sanity": {},
    }
    for name in ("standard", "pgd"):
        own = read_stage_json(folders[name] / "eval" / "cls_metrics.json")
        rob = (audit.get("robustness") or {}).get(name, {})
        numbers["classifiers"][name] = {
            "n": rob.get("n"),
            **{
                key: rob.get(key)
                for cond in CONDITIONS
                for key in (input_key(cond, "accuracy"), input_key(cond, "accuracy_ci95"))
            },
            "auroc": own.get("auroc"),
            "auroc_ci95": (own.get("ci95") or {}).get("auroc"),
            "eval_n": own.get("n"),
        }
        sane = sane_methods(audit, name)
        numbers["sanity"][name] = None if sane is None else {"passed": sane[0], "failed": sane[1]}
    return numbers
