"""Coverage broken down by box size: COCO's limits relative to the image, hand-computed means."""

from __future__ import annotations

import numpy as np
import pytest

from fracdet.audit.report import _box_size_section
from fracdet.audit.schema import AuditSchema
from fracdet.audit.summary import BOX_SIZES, _by_box_size, box_size_class


def test_the_classes_are_cocos_limits_relative_to_a_640_by_480_image():
    assert BOX_SIZES["small"][1] == pytest.approx(1 / 300)  # 32² / (640 * 480)
    assert BOX_SIZES["large"][0] == pytest.approx(0.03)  # 96² / (640 * 480)
    shares = [0.001, 32**2 / (640 * 480), 0.01, 96**2 / (640 * 480), 0.5, np.nan]
    assert box_size_class(np.array(shares)).tolist() == [
        "small",
        "medium",  # the lower limit belongs to the class above, as in COCO's area ranges
        "medium",
        "large",
        "large",
        "",  # no box
    ]


def _row(share: float | None, cov: float | None) -> dict[str, str]:
    text = lambda v: "" if v is None else str(v)  # noqa: E731
    return {"box_share": text(share), "SM_clean_cov25": text(cov), "SM_pgd_cov25": text(cov)}


def test_coverage_per_class_hand_computed():
    schema = AuditSchema(("SM",), (25.0,))
    rows = [
        _row(0.002, 0.1),  # small
        _row(0.003, 0.3),  # small
        _row(0.01, 0.5),  # medium
        _row(0.2, 0.9),  # large
        _row(0.1, 0.7),  # large
        _row(0.04, 0.8),  # large
        _row(None, None),  # no box: in no class
    ]
    out = _by_box_size(rows, schema, n_boot=200, seed=0)
    assert out["n"] == {"small": 2, "medium": 1, "large": 3}
    clean = out["SM/clean"]
    assert clean["small"]["mean"] == pytest.approx(0.2) and clean["small"]["n"] == 2
    assert clean["medium"]["mean"] == pytest.approx(0.5)
    assert clean["large"]["mean"] == pytest.approx(0.8) and clean["large"]["n"] == 3
    low, high = clean["large"]["ci95"]
    assert 0.7 - 1e-9 <= low <= 0.8 <= high <= 0.9 + 1e-9  # within the range of its 3 values

    metrics = {
        "focus_percentile": 25.0,
        "by_box_size": {
            "metric": "coverage@25",
            "limits": {
                name: [lo, None if hi == np.inf else hi] for name, (lo, hi) in BOX_SIZES.items()
            },
            "models": {"m": out},
        },
    }
    (section,) = _box_size_section(metrics)
    assert "small 0–0.33%, medium 0.33–3%, large ≥ 3%" in section.text
    assert section.table[0]["method"] == "SM" and section.table[0]["input"] == "clean"
    assert section.table[0]["medium"] == "0.500"  # one image: no CI
    assert section.table[0]["n (small / medium / large)"] == "2 / 1 / 3"
    assert _box_size_section({"focus_percentile": 25.0}) == []  # an older metrics.json
