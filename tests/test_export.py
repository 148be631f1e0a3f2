"""``fracdet export``: both tracks to ONNX with the parity check, predict on the exports, errors.

The models are the suite's tiny ones (a random resnet10t at 32 px, an untrained 1-class
YOLOv8n that draws boxes); the parity numbers are onnxruntime against PyTorch on the same
inputs, so a broken export (or a check that cannot fail) shows up here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import make_tiny_detector, read_rows, save_image
from typer.testing import CliRunner

from fracdet.cli import app
from fracdet.cls.checkpoint import ClassifierMeta, load_classifier, save_classifier
from fracdet.cls.model import create_classifier
from fracdet.cls.onnx import META_KEY, NEEDS_PYTORCH, OnnxClassifier
from fracdet.errors import ConfigError
from fracdet.export import ExportConfig, export_model
from fracdet.fsutil import sha256_file
from fracdet.predict import PredictConfig, predict_folder

runner = CliRunner()


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny classifier run and detector, a few images, and both exported (the classifier
    through the CLI, the detector through the library)."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = create_classifier("resnet10t", num_outputs=1)
    meta = ClassifierMeta(
        backbone="resnet10t",
        class_names=("not_fractured", "fractured"),
        image_size=32,
        mean=tuple(model.mean.flatten().tolist()),
        std=tuple(model.std.flatten().tolist()),
    )
    save_classifier(model, meta, root / "cls_run" / "best.safetensors")
    det = make_tiny_detector(root)
    images = root / "images"
    for i, (w, h) in enumerate([(80, 60), (60, 80), (64, 64), (50, 70)]):
        save_image(images / f"img{i}.{'png' if i % 2 else 'jpg'}", w, h, seed=i)
    result = runner.invoke(
        app, ["export", str(root / "cls_run"), "--images", str(images), "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip().startswith("classifier -> ") and "logits max |diff|" in result.output
    )
    export_model(ExportConfig(det, output=root / "det-onnx", images=images, imgsz=64))
    return {
        "root": root,
        "cls_run": root / "cls_run",
        "det": det,
        "images": images,
        "cls_onnx": root / "cls_run-onnx",
        "det_onnx": root / "det-onnx",
    }


def test_classifier_export_keeps_the_contract_and_matches_pytorch(exported):
    folder = exported["cls_onnx"]
    record = json.loads((folder / "export.json").read_text())
    parity = record["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    # 8 seeded random + all-black + all-white + the 4 real images, at batch 14 and batch 1
    assert (parity["n_inputs"], parity["n_real"], parity["batch_sizes"]) == (14, 4, [14, 1])
    assert record["onnx"]["opset"] == 17 and record["seed"] == 1
    assert record["onnx"]["sha256"] == sha256_file(folder / "model.onnx")
    assert record["onnx"]["input"]["shape"] == ["batch", 1, 32, 32]
    assert record["versions"]["onnxruntime"] == ort.__version__
    assert len(record["samples"]["used"]) == 4
    proto = onnx.load(str(folder / "model.onnx"))
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {17}
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "pixels" and inp.shape == ["batch", 1, 32, 32]
    # the pixel-space contract: [0, 1] grey in, the same logits as the PyTorch wrapper
    model, _ = load_classifier(exported["cls_run"])
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    (logits,) = session.run(None, {"pixels": x.numpy()})
    np.testing.assert_allclose(logits, model(x).detach().numpy(), atol=1e-4)
    runner_model, meta = load_classifier(folder)  # the folder, as predict takes it
    assert isinstance(runner_model, OnnxClassifier) and meta.image_size == 32
    assert META_KEY in {p.key for p in proto.metadata_props}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        runner_model(x * 255)


def test_detector_export_matches_ultralytics_pt(exported):
    record = json.loads((exported["det_onnx"] / "export.json").read_text())
    parity = record["parity"]
    assert parity["passed"] and parity["boxes"] > 0 and parity["unpaired_boxes"] == 0
    assert parity["raw_box_max_abs_diff_px"] <= parity["tolerance"]["box_px"] == 1e-2
    assert parity["raw_score_max_abs_diff"] <= parity["tolerance"]["score"] == 1e-4
    assert parity["images"] == 8 + 4 and record["kind"] == "detector"
    assert record["source"]["sha256"] == {"tiny_det.pt": sha256_file(exported["det"])}
    assert not (exported["root"] / "tiny_det.onnx").exists()  # nothing beside the source
    assert sorted(p.name for p in exported["det_onnx"].iterdir()) == [
        "MODEL_CARD.md",
        "export.json",
        "model.onnx",
        "model_card.json",
    ]


@pytest.mark.parametrize("which", ["cls_onnx", "det_onnx"])
def test_an_export_carries_the_models_card_for_its_onnx_file(exported, which):
    from fracdet.report.model_card import read_model_card

    folder = exported[which]
    card = read_model_card(folder)
    record = json.loads((folder / "export.json").read_text())
    assert card.model.framework == "onnx"
    assert [(f.name, f.sha256) for f in card.model.files] == [
        ("model.onnx", sha256_file(folder / "model.onnx"))
    ]
    (entry,) = card.exports
    assert entry.format == "onnx" and entry.sha256 == record["onnx"]["sha256"]
    assert entry.details["opset"] == 17 and entry.details["passed"] is True
    assert "onnx" in (folder / "MODEL_CARD.md").read_text().lower()
    assert card.model.kind == ("classifier" if which == "cls_onnx" else "detector")


def _predict(exported, out: Path, cls: Path, det: Path) -> list[dict[str, str]]:
    summary = predict_folder(
        PredictConfig(
            folder=exported["images"],
            output=out,
            cls=cls,
            det=det,
            det_imgsz=64,
            workers=0,
            batch_size=3,
            device="cpu",
            precision="fp32",
        )
    )
    assert summary.n_ok == 4
    return read_rows(out / "predictions.csv")


def test_predict_with_onnx_models_gives_the_rows_of_pytorch(exported, tmp_path):
    torch_rows = _predict(exported, tmp_path / "pt", exported["cls_run"], exported["det"])
    onnx_rows = _predict(
        exported,
        tmp_path / "onnx",
        exported["cls_onnx"] / "model.onnx",
        exported["det_onnx"],  # the folder: its model.onnx
    )
    assert [r["path"] for r in onnx_rows] == [r["path"] for r in torch_rows]
    assert sum(int(r["n_boxes"]) for r in torch_rows) > 0
    for a, b in zip(torch_rows, onnx_rows, strict=True):
        assert float(a["fracture_probability"]) == pytest.approx(
            float(b["fracture_probability"]), abs=1e-6
        )
        assert a["fracture_decision"] == b["fracture_decision"] and a["n_boxes"] == b["n_boxes"]
        assert float(a["max_box_score"]) == pytest.approx(float(b["max_box_score"]), abs=1e-4)
    boxes = [json.loads((tmp_path / run / "detections.json").read_text()) for run in ("pt", "onnx")]
    flat = [[d["bbox"] + [d["score"]] for d in doc] for doc in boxes]
    np.testing.assert_allclose(np.array(flat[0]), np.array(flat[1]), atol=1e-2)
    report = json.loads((tmp_path / "onnx" / "predict_report.json").read_text())
    assert report["checkpoints"]["cls"]["runtime"] == "onnxruntime"
    assert report["checkpoints"]["det"]["runtime"] == "onnxruntime"
    assert set(report["checkpoints"]["det"]["sha256"]) == {"model.onnx"}


def test_a_parity_failure_is_one_error_and_writes_nothing(exported, tmp_path, monkeypatch):
    original = OnnxClassifier.forward
    monkeypatch.setattr(OnnxClassifier, "forward", lambda self, x: original(self, x) + 1e-3)
    with pytest.raises(
        ConfigError,
        match=r"does not reproduce the PyTorch one: max_abs_diff=0.001 \(tolerance 0.0001;",
    ):
        export_model(ExportConfig(exported["cls_run"], output=tmp_path / "bad"))
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_what_is_not_a_model(exported, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    line = one_line_error(runner.invoke(app, ["export", str(text)]))
    assert str(text) in line and "not a model to export" in line
    line = one_line_error(runner.invoke(app, ["export", str(tmp_path / "missing.pt")]))
    assert "model to export not found" in line
    line = one_line_error(runner.invoke(app, ["export", str(exported["cls_onnx"])]))
    assert "already an ONNX model" in line
    line = one_line_error(
        runner.invoke(app, ["export", str(exported["cls_run"]), "--out", str(exported["cls_onnx"])])
    )
    assert "already exists; pass --overwrite" in line


def test_commands_that_need_gradients_refuse_onnx(exported, phantom_dataset, tmp_path):
    onnx_cls = exported["cls_onnx"] / "model.onnx"
    result = runner.invoke(
        app,
        ["audit", str(phantom_dataset), "--cls", str(onnx_cls), "--out", str(tmp_path / "a")],
    )
    assert one_line_error(result) == f"error: {onnx_cls}: an ONNX model: {NEEDS_PYTORCH}"
    result = runner.invoke(
        app,
        [
            "predict",
            str(exported["images"]),
            "--cls",
            str(onnx_cls),
            "--gradcam",
            "--out",
            str(tmp_path / "p"),
        ],
    )
    assert NEEDS_PYTORCH in one_line_error(result)
    result = runner.invoke(
        app,
        ["audit", str(phantom_dataset), "--cls", str(exported["cls_run"]), "--det",
         str(exported["det_onnx"]), "--out", str(tmp_path / "b")],
    )  # fmt: skip
    assert "needs the PyTorch detector; use its .pt checkpoint" in one_line_error(result)
    assert not (tmp_path / "a").exists() and not (tmp_path / "p").exists()


def test_eval_cls_scores_an_onnx_classifier_like_its_checkpoint(
    exported, phantom_dataset, tmp_path
):
    from fracdet.cls.evaluate import EvalClsConfig, evaluate_classifier

    def scores(checkpoint: Path, out: str) -> dict:
        cfg = EvalClsConfig(
            checkpoint,
            phantom_dataset / "manifest.csv",
            split="all",
            output=tmp_path / out,
            n_boot=10,
            workers=0,
            device="cpu",
            precision="fp32",
        )
        return evaluate_classifier(cfg).metrics

    a, b = scores(exported["cls_run"], "pt"), scores(exported["cls_onnx"], "onnx")
    numbers = [k for k, v in a.items() if isinstance(v, float)]
    assert "auroc" in numbers
    assert {k: b[k] for k in numbers} == pytest.approx({k: a[k] for k in numbers}, abs=1e-6)
    from fracdet.report.model_card import read_model_card

    card = read_model_card(exported["cls_onnx"])  # the export's card takes the ONNX numbers
    assert card.evaluations["all"].metrics["auroc"].value == pytest.approx(b["auroc"])


@pytest.mark.parametrize("flag", ["--cls", "--det"])
def test_predict_names_a_damaged_onnx_file_in_one_line(exported, tmp_path, flag):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage that is not a protobuf" * 3)
    result = runner.invoke(
        app, ["predict", str(exported["images"]), flag, str(broken), "--out", str(tmp_path / "o")]
    )
    line = one_line_error(result)
    assert line.startswith(f"error: {broken}: ") and "ONNX" in line
    assert not (tmp_path / "o").exists()


def test_predict_says_which_flag_an_onnx_model_belongs_to(exported, tmp_path):
    result = runner.invoke(
        app,
        ["predict", str(exported["images"]), "--det", str(exported["cls_onnx"]), "--out",
         str(tmp_path / "o")],
    )  # fmt: skip
    assert "classifier exported to ONNX, pass it with --cls" in one_line_error(result)
    result = runner.invoke(
        app,
        ["predict", str(exported["images"]), "--cls", str(exported["det_onnx"]), "--out",
         str(tmp_path / "o")],
    )  # fmt: skip
    assert "a detector .onnx goes to --det" in one_line_error(result)


def test_predict_rows_are_written_with_csv_header(exported, tmp_path):
    """The ONNX run's table has the PyTorch run's columns (one schema per result)."""
    out = tmp_path / "o"
    _predict(exported, out, exported["cls_onnx"], exported["det_onnx"])
    with open(out / "predictions.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert (
        header[:4] == ["image_id", "path", "status", "reason"] and "fracture_probability" in header
    )


def test_box_pairing_tells_an_nms_near_tie_from_a_lost_box():
    from fracdet.det.onnx import pair_boxes

    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], dtype=float)
    b = np.array([[0, 0, 10.004, 10], [20, 20, 30, 30], [60, 60, 70, 70]], dtype=float)
    scores_a = np.array([0.9, 0.5, 0.3])
    # the third boxes differ, but their scores are equal to 1e-8: NMS could keep either
    box, score, unpaired, not_ties = pair_boxes(
        a, scores_a, b, np.array([0.90002, 0.5, 0.30000001])
    )
    assert (box, score, unpaired, not_ties) == (pytest.approx(0.004), pytest.approx(2e-5), 2, 0)
    # a box of score 0.2 where the other side has 0.3: a lost box, not a tie
    *_, unpaired, not_ties = pair_boxes(a, scores_a, b, np.array([0.9, 0.5, 0.2]))
    assert (unpaired, not_ties) == (2, 2)
    assert pair_boxes(a, scores_a, a[:0], scores_a[:0])[2:] == (3, 3)


def test_detector_commands_that_need_pytorch_refuse_onnx(exported):
    from fracdet.det.model import load_detector

    with pytest.raises(ConfigError, match=r"needs the PyTorch detector; use its \.pt checkpoint"):
        load_detector(exported["det_onnx"] / "model.onnx")  # eval-det, train-det, audit --det
    assert load_detector(exported["det_onnx"], allow_onnx=True).task == "detect"


def test_an_imported_torchscript_classifier_exports_and_predicts(exported, tmp_path):
    from test_import_cls import SIZE, _scripted_classifier

    from fracdet.cls.importer import ImportClsConfig, import_classifier

    source = _scripted_classifier(tmp_path / "colleague.pt", classes=3)
    imported = tmp_path / "scripted"
    import_classifier(
        ImportClsConfig(
            source=source,
            arch="torchscript",
            head="softmax",
            class_names=("normal", "fracture", "implant"),
            fracture_index=1,
            input_size=SIZE,
            output=imported,
        )
    )
    summary = export_model(ExportConfig(imported, output=tmp_path / "exported"))
    assert summary.kind == "classifier" and summary.parity["max_abs_diff"] <= 1e-4
    rows = [
        _predict(exported, tmp_path / run, model, exported["det"])
        for run, model in (("pt", imported), ("onnx", tmp_path / "exported"))
    ]
    for a, b in zip(*rows, strict=True):
        assert float(a["fracture_probability"]) == pytest.approx(
            float(b["fracture_probability"]), abs=1e-6
        )
