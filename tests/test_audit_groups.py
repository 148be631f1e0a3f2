"""The audit split by a manifest column (``group_by``): numbers checked by hand on six images."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import mannwhitneyu

from fracdet.audit.config import AuditConfig
from fracdet.audit.groups import UNKNOWN, group_rows, group_sections, summarize_groups
from fracdet.audit.inputs import AuditInputs, AuditItem, load_inputs
from fracdet.audit.schema import AuditSchema
from fracdet.audit.stats import proportion_ci
from fracdet.errors import ConfigError, DataError

# index: hardware, label, p_clean, p_pgd, SAL coverage@25, SAL energy, detector's best score
IMAGES = {
    1: ("1", 1, 0.9, 0.6, "0.5", "0.6", 0.9),
    2: ("1", 1, 0.3, 0.6, "0.1", "0.2", 0.1),
    3: ("0", 1, 0.8, 0.6, "0.4", "0.3", 0.5),
    4: ("0", 0, 0.2, 0.6, "", "", 0.0),
    5: ("0", 1, 0.1, 0.6, "0.2", "0.1", 0.3),
    6: ("", 0, 0.7, 0.6, "", "", 0.2),
}

#: One method (SAL), coverage at 25 only.
SCHEMA = AuditSchema(("SAL",), (25.0,))


def _inputs(indices) -> AuditInputs:
    items = tuple(
        AuditItem(
            i, f"img{i}", Path(f"img{i}.png"), IMAGES[i][1], (), 10, 10, {"hardware": IMAGES[i][0]}
        )
        for i in indices
    )
    return AuditInputs(items, Path("manifest.csv"), True, ("fractured",), "hash")


def _rows(model: str, threshold: float, indices) -> list[dict[str, str]]:
    rows = []
    for i in indices:
        _, label, p_clean, p_pgd, cov, energy, det = IMAGES[i]
        rows.append(
            {
                "model": model,
                "index": str(i),
                "label": str(label),
                "p_clean": str(p_clean),
                "p_pgd": str(p_pgd),
                "pred_clean": str(int(p_clean >= threshold)),
                "SAL_clean_cov25": cov,
                "SAL_clean_energy": energy,
                "det_max_clean": str(det),
            }
        )
    return rows


def _share(hits: int, n: int) -> dict:
    return {"value": hits / n, "ci95": list(proportion_ci(hits, n)), "n": n}


def test_numbers_per_group_by_hand():
    everything = range(1, 7)
    per_model = {"m": _rows("m", 0.5, everything), "strict": _rows("strict", 0.95, everything)}
    out = summarize_groups(
        per_model,
        _inputs(everything),
        ["hardware"],
        SCHEMA,
        thresholds={"m": 0.5, "strict": 0.95},
        det_conf=0.25,
        n_boot=200,
        seed=0,
    )
    entry = out["hardware"]
    assert (
        entry["values"] == ["0", "1", UNKNOWN] and entry["gaps"] == {}
    )  # three values: no two-group gap
    hw, no, unknown = (entry["models"]["m"][v] for v in ("1", "0", UNKNOWN))
    # hardware: images 1, 2 (both fractured; called 1, 0 at 0.5)
    assert (hw["n"], hw["n_positive"]) == (2, 2)
    assert (
        hw["clean_accuracy"] == _share(1, 2)
        and hw["clean_sensitivity"] == _share(1, 2)
        and hw["pgd_accuracy"] == _share(2, 2)
    )
    # no hardware: images 3, 4, 5 (labels 1, 0, 1; called 1, 0, 0)
    assert (
        no["clean_accuracy"] == _share(2, 3)
        and no["clean_sensitivity"] == _share(1, 2)
        and no["pgd_accuracy"] == _share(2, 3)
    )
    # empty cell: image 6 (intact, called 1): no fractured image, so no sensitivity
    assert unknown["clean_accuracy"] == _share(0, 1) and unknown["clean_sensitivity"] == {
        "value": None,
        "ci95": None,
        "n": 0,
    }
    # coverage and energy over the images with boxes: (0.5 + 0.1) / 2 and (0.4 + 0.2) / 2;
    # (0.6 + 0.2) / 2 and (0.3 + 0.1) / 2
    assert hw["localization"]["SAL"]["coverage@25"]["mean"] == pytest.approx(0.3) and no[
        "localization"
    ]["SAL"]["coverage@25"]["mean"] == pytest.approx(0.3)
    assert hw["localization"]["SAL"]["energy_in_box"]["mean"] == pytest.approx(0.4) and no[
        "localization"
    ]["SAL"]["energy_in_box"]["mean"] == pytest.approx(0.2)
    assert hw["localization"]["SAL"]["coverage@25"]["n"] == 2 and unknown["localization"]["SAL"][
        "coverage@25"
    ] == {"mean": None, "ci95": None, "n": 0}
    # detector calls (score >= 0.25): 1, 0, 1, 0, 1, 0 against the classifier's 1, 0, 1, 0, 0, 1
    assert (
        hw["agreement"] == _share(2, 2)
        and no["agreement"] == _share(2, 3)
        and unknown["agreement"] == _share(0, 1)
    )
    # each classifier at its own operating point: at 0.95 nothing is called fractured
    assert entry["models"]["strict"]["1"]["clean_accuracy"] == _share(0, 2)


def test_two_values_get_the_gap_and_no_detector_no_agreement():
    five = range(1, 6)
    out = summarize_groups(
        {"m": _rows("m", 0.5, five)},
        _inputs(five),
        ["hardware"],
        SCHEMA,
        thresholds={"m": 0.5},
        det_conf=None,
        n_boot=200,
        seed=0,
    )
    gap = out["hardware"]["gaps"]["m"]["SAL"]
    assert (gap["a"], gap["b"], gap["n_a"], gap["n_b"]) == ("1", "0", 2, 2)
    assert gap["mean_diff"] == pytest.approx((0.5 + 0.1) / 2 - (0.4 + 0.2) / 2)
    assert gap["mann_whitney_p"] == pytest.approx(
        mannwhitneyu([0.5, 0.1], [0.4, 0.2], alternative="two-sided").pvalue
    )
    assert gap["ci95"][0] <= gap["mean_diff"] <= gap["ci95"][1]
    assert "agreement" not in out["hardware"]["models"]["m"]["1"]


def test_tables_and_sections():
    five = range(1, 6)
    groups = summarize_groups(
        {"m": _rows("m", 0.5, five)},
        _inputs(five),
        ["hardware"],
        SCHEMA,
        thresholds={"m": 0.5},
        det_conf=0.25,
        n_boot=200,
        seed=0,
    )
    rows = group_rows(groups, 25.0)["hardware"]
    assert [(r["classifier"], r["hardware"], r["images"], r["fractured"]) for r in rows] == [
        ("m", "0", 3, 2),
        ("m", "1", 2, 2),
    ]
    assert rows[1]["accuracy (clean)"].startswith("0.500 [") and rows[1][
        "agrees with detector"
    ].startswith("1.000 [")
    sections = group_sections({"groups": groups, "focus_percentile": 25.0})
    assert [s.heading for s in sections] == ["By hardware", "By hardware: the gap in coverage@25"]
    assert group_sections({"focus_percentile": 25.0}) == []


def test_load_inputs_carries_and_checks_the_columns(phantom_dataset, tmp_path):
    inputs = load_inputs(phantom_dataset, split="test", group_by=("hardware", "body_part"))
    assert all(
        set(it.attributes) == {"hardware", "body_part"} and it.attributes["hardware"] in ("0", "1")
        for it in inputs.items
    )
    assert all(it.attributes == {} for it in load_inputs(phantom_dataset, split="test").items)
    with pytest.raises(
        DataError, match="group_by: no column 'hardwre' in the manifest; it has .*hardware"
    ):
        load_inputs(phantom_dataset, split="test", group_by=("hardwre",))
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DataError, match="group_by needs a manifest"):
        load_inputs(tmp_path / "imgs", split="test", group_by=("hardware",))
    with pytest.raises(ConfigError, match="group_by lists a column twice"):
        AuditConfig(dataset=tmp_path, group_by=("hardware", "hardware"))
