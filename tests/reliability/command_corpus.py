"""Bad inputs for every command but ``convert``: swapped and crafted models, broken manifests,
bad options.

A case builds what it needs under its own folder (from the shared :class:`Kit`: a tiny
classifier run, a tiny detector, a tiny MAE run, the phantom dataset) and returns the command
line. Nothing binary is committed.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from conftest import save_image
from PIL import Image
from test_images import make_dicom
from test_mae import TINY_MODEL

__all__ = ["Kit", "CommandCase", "COMMAND_CASES", "Payload", "JUNK_JPEG"]

#: Starts like a JPEG, decodes as nothing: an image that breaks inside an otherwise good dataset.
JUNK_JPEG = b"\xff\xd8\xff\xe0 not really a jpeg"


class Payload:
    """Unpickling this creates ``marker``: the stand-in for code a crafted .pt would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@dataclass(frozen=True)
class Kit:
    """What the cases share (built once, never changed): models and the phantom dataset."""

    root: Path  # holds the models below
    cls_run: Path  # a fracdet classifier run folder (resnet10t, 32 px, binary)
    det_pt: Path  # an Ultralytics YOLOv8n .pt with one class
    dataset: Path  # the converted phantom dataset (read-only)
    shards: tuple[Path, Path]  # two finished `predict --shard K/2` outputs
    audit_manifest: Path  # four phantom images, two with boxes (a quick audit)
    audit_shards: tuple[Path, Path]  # two finished `audit --shard K/2` outputs of it
    mae_run: Path  # a pretrain-mae run folder (tiny ViT-MAE, 32 px, 8-px patches, one epoch)


@dataclass(frozen=True)
class CommandCase:
    """One bad input and what the command must do with it.

    ``expect``: ``"error"`` (exit != 0, one ``error:`` line holding ``hint``, where ``{tmp}``
    stands for the case's folder; nothing written
    anywhere) or ``"done"`` (exit 0, nothing written outside the output; ``check(out, tmp)``
    says the bad item was skipped and recorded, or handled, and the rest done).
    """

    name: str
    build: Callable[[Kit, Path], list[str]]
    expect: str
    hint: str | tuple[str, ...] = ()
    check: Callable[[Path, Path], None] | None = None

    @property
    def command(self) -> str:
        return next(c for c in COMMANDS if self.name.startswith(c + "-"))


COMMANDS = (
    "train-cls",
    "eval-cls",
    "train-det",
    "eval-det",
    "predict",
    "merge",
    "audit",
    "pretrain-mae",
    "mae-show",
    "run",
    "export",
)


# --- inputs ------------------------------------------------------------------------------------


def crafted_pickle(tmp: Path) -> Path:
    """``crafted.pt``: looks like an Ultralytics checkpoint, creates ``PAYLOAD_RAN`` when fully
    unpickled."""
    path = tmp / "crafted.pt"
    torch.save({"model": Payload(tmp / "PAYLOAD_RAN"), "train_args": {}, "epoch": -1}, path)
    return path


def no_payload(out: Path, tmp: Path) -> None:
    assert not (tmp / "PAYLOAD_RAN").exists(), "the crafted pickle ran its payload"


def wrong_shapes(kit: Kit, tmp: Path) -> Path:
    """``wrong/best.safetensors`` beside the run's own ``best.json``: resnet10t's tensors, conv1 and
    head resized."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(kit.cls_run / "best.safetensors"))
    state["conv1.0.weight"] = torch.zeros(5, 2, 3, 3)
    state["fc.weight"] = torch.zeros(3, state["fc.weight"].shape[1])
    folder = tmp / "wrong"
    folder.mkdir()
    save_file(state, str(folder / "best.safetensors"))
    shutil.copyfile(kit.cls_run / "best.json", folder / "best.json")
    return folder


def manifest_rows(dataset: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A converted dataset's manifest with absolute image paths (so a copy can live anywhere)."""
    with open(dataset / "manifest.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [{**row, "path": str((dataset / row["path"]).resolve())} for row in reader]
        return list(reader.fieldnames or []), rows


def write_manifest(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def empty_manifest(kit: Kit, tmp: Path) -> Path:
    """The header alone: a manifest of no images."""
    return write_manifest(tmp / "empty.csv", manifest_rows(kit.dataset)[0], [])


def manifest_without_split(kit: Kit, tmp: Path) -> Path:
    header, rows = manifest_rows(kit.dataset)
    return write_manifest(tmp / "nosplit.csv", [c for c in header if c != "split"], rows)


def small_manifest(
    dataset: Path,
    tmp: Path,
    *,
    split: str = "all",
    boxed: int = 2,
    count: int = 4,
    junk: bool = False,
) -> Path:
    """``tmp/manifest.csv``: ``count`` rows of ``split``, ``boxed`` of them with boxes; with
    ``junk`` the last image is junk bytes."""
    header, rows = manifest_rows(dataset)
    chosen = [r for r in rows if split == "all" or r["split"] == split]
    chosen = [r for r in chosen if r["n_boxes"] != "0"][:boxed] + [
        r for r in chosen if r["n_boxes"] == "0"
    ]
    chosen = chosen[:count]
    if junk:
        (tmp / "BROKEN.jpg").write_bytes(JUNK_JPEG)
        chosen[-1] = {**chosen[-1], "image_id": "BROKEN.jpg", "path": str(tmp / "BROKEN.jpg")}
    return write_manifest(tmp / "manifest.csv", header, chosen)


def manifest_with_junk_train(kit: Kit, tmp: Path) -> Path:
    """``junk_train.csv``: every train image junk bytes, val and test as they were."""
    header, found = manifest_rows(kit.dataset)
    for k, row in enumerate(r for r in found if r["split"] == "train"):
        junk = tmp / "junk" / f"train{k}.jpg"
        junk.parent.mkdir(exist_ok=True)
        junk.write_bytes(JUNK_JPEG)
        row["path"] = str(junk)
    return write_manifest(tmp / "junk_train.csv", header, found)


def dataset_with_junk_image(kit: Kit, tmp: Path) -> Path:
    """A copy of the converted dataset whose first test image is junk (labels and COCO
    unchanged)."""
    copy = Path(shutil.copytree(kit.dataset, tmp / "dataset"))
    victim = sorted((copy / "images" / "test").iterdir())[0]
    victim.write_bytes(JUNK_JPEG)
    return copy


def folder_of(tmp: Path, *, junk: bool = False, medical: bool = False) -> Path:
    """Two plain images, plus a junk JPEG or a DICOM and a 16-bit PNG."""
    folder = tmp / "images"
    save_image(folder / "a.png", 48, 40, seed=1)
    save_image(folder / "b.jpg", 40, 56, seed=2)
    if junk:
        (folder / "BROKEN.jpg").write_bytes(JUNK_JPEG)
    if medical:
        rng = np.random.default_rng(3)
        make_dicom(folder / "scan.dcm", rng.integers(0, 4095, (50, 40)).astype(np.uint16))
        Image.fromarray(rng.integers(0, 65535, (36, 44), dtype=np.uint16)).save(
            folder / "deep16.png"
        )
    return folder


def mae_images(tmp: Path, *, junk: bool = False, only_junk: bool = False) -> Path:
    """``tmp/mae_images``: six small images, plus a junk JPEG (``junk``); or three junk JPEGs alone
    (``only_junk``)."""
    folder = tmp / "mae_images"
    folder.mkdir()
    for k in range(0 if only_junk else 6):
        save_image(folder / f"x{k}.png", 36, 32, seed=k)
    for name in ("BROKEN.jpg",) if junk else ("j0.jpg", "j1.jpg", "j2.jpg") if only_junk else ():
        (folder / name).write_bytes(JUNK_JPEG)
    return folder


def empty_folder(tmp: Path) -> Path:
    (tmp / "nothing").mkdir()
    return tmp / "nothing"


def bare_images_folder(tmp: Path) -> Path:
    """``tmp/nothing/images``, empty: not the FracAtlas layout (no images/Fractured)."""
    (empty_folder(tmp) / "images").mkdir()
    return tmp / "nothing"


def study_config(tmp: Path, raw: bytes | None = None, **values: object) -> Path:
    """``tmp/study.yaml``: ``raw`` as it is, or ``values`` (with a ``source`` in FracAtlas layout,
    empty, unless given)."""
    path = tmp / "study.yaml"
    if raw is None:
        if "source" not in values:
            (tmp / "FracAtlas" / "images" / "Fractured").mkdir(parents=True)
            values["source"] = tmp / "FracAtlas"
        raw = json.dumps(values, default=str).encode()
    path.write_bytes(raw)
    return path


def existing_output(tmp: Path) -> Path:
    out = tmp / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier result")
    return out


def file_output(tmp: Path) -> Path:
    out = tmp / "out"
    out.write_text("a file, not a folder")
    return out


def inside_file(tmp: Path) -> Path:
    """An output path under a file: no folder can be made there."""
    return file_output(tmp) / "report"


# --- checks of the runs that go on -------------------------------------------------------------


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def eval_cls_skipped(out: Path, tmp: Path) -> None:
    metrics = json.loads((out / "cls_metrics.json").read_text())
    assert [Path(s["file"]).name for s in metrics["skipped"]] == ["BROKEN.jpg"] and metrics[
        "skipped"
    ][0]["reason"]
    assert metrics["n"] == 2 and len(rows(out / "predictions.csv")) == 2


def eval_det_skipped(out: Path, tmp: Path) -> None:
    metrics = json.loads((out / "det_metrics.json").read_text())
    victim = sorted((tmp / "dataset" / "images" / "test").iterdir())[0]
    assert [(p["file"], p["kind"]) for p in metrics["problems"]] == [
        (str(victim), "image_corrupt")
    ] and "skipped" in metrics["problems"][0]["action"]
    scored = json.loads((out / "predictions_test.json").read_text())
    level = metrics["image_level"]
    # Scored under the ground-truth file's own ids: the skipped image shifts no other image's id.
    gt = json.loads((tmp / "dataset" / "annotations" / "instances_test.json").read_text())
    kept_ids = {i["id"] for i in gt["images"] if i["file_name"] != victim.name}
    assert (
        level["n_positive"] + level["n_negative"] == 2
        and {r["image_id"] for r in scored} <= kept_ids
    )


def predict_skipped(out: Path, tmp: Path) -> None:
    found = {r["path"]: r for r in rows(out / "predictions.csv")}
    assert set(found) == {"a.png", "b.jpg", "BROKEN.jpg"}
    assert found["BROKEN.jpg"]["status"] == "skipped" and found["BROKEN.jpg"]["reason"]
    assert found["a.png"]["status"] == found["b.jpg"]["status"] == "ok"
    report = json.loads((out / "predict_report.json").read_text())
    assert [s["path"] for s in report["skipped"]] == ["BROKEN.jpg"]


def predict_medical(out: Path, tmp: Path) -> None:
    found = {r["path"]: r for r in rows(out / "predictions.csv")}
    assert set(found) == {"a.png", "b.jpg", "scan.dcm", "deep16.png"}
    assert all(r["status"] == "ok" and r["fracture_probability"] for r in found.values()), found
    assert (found["scan.dcm"]["width"], found["scan.dcm"]["height"]) == ("40", "50")
    assert (found["deep16.png"]["width"], found["deep16.png"]["height"]) == ("44", "36")


def audit_skipped(out: Path, tmp: Path) -> None:
    found = {r["key"]: r for r in rows(out / "per_image.csv")}
    assert (
        len(found) == 4
        and found["BROKEN.jpg"]["status"] == "skipped"
        and found["BROKEN.jpg"]["reason"]
    )
    assert all(r["status"] == "ok" for k, r in found.items() if k != "BROKEN.jpg")
    assert (out / "report.html").is_file()


def pretrain_mae_skipped(out: Path, tmp: Path) -> None:
    report = json.loads((out / "train_report.json").read_text())
    assert [Path(s["file"]).name for s in report["skipped"]] == ["BROKEN.jpg"] and report[
        "skipped"
    ][0]["reason"]
    assert report["train_images"] + report["val_images"] == 7 and report["epochs_run"] == 1
    assert np.isfinite(report["best_val"]["mse"]) and (out / "encoder.safetensors").is_file()


def mae_show_skipped(out: Path, tmp: Path) -> None:
    doc = json.loads((out / "mae_show.json").read_text())
    assert [Path(s["file"]).name for s in doc["skipped"]] == ["BROKEN.jpg"] and doc["skipped"][0][
        "reason"
    ]
    assert (
        doc["adapted"]["images"] == doc["start"]["images"] == 6 and (out / "mae_show.png").is_file()
    )


def audit_medical(out: Path, tmp: Path) -> None:
    found = {r["key"]: r for r in rows(out / "per_image.csv")}
    assert set(found) == {"a.png", "b.jpg", "scan.dcm", "deep16.png"}
    assert all(r["status"] == "ok" for r in found.values()), found
    assert (out / "report.html").is_file()


# --- command lines -----------------------------------------------------------------------------

CPU = ["--device", "cpu", "--workers", "0"]


def train_cls(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train-cls",
        str(manifest),
        "--out",
        str(out),
        "--backbone",
        "resnet10t",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        *CPU,
        *extra,
    ]


def eval_cls(checkpoint: Path, manifest: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval-cls",
        str(checkpoint),
        str(manifest),
        "--split",
        "test",
        "--out",
        str(out),
        "--n-boot",
        "20",
        *CPU,
        *extra,
    ]


def train_det(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train-det",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--imgsz",
        "32",
        "--batch",
        "4",
        *CPU,
        *extra,
    ]


def eval_det(weights: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval-det",
        str(weights),
        str(data),
        "--split",
        "test",
        "--out",
        str(out),
        "--imgsz",
        "64",
        "--no-ultralytics-val",
        "--device",
        "cpu",
        *extra,
    ]


def predict(folder: Path, out: Path, *models: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        "predict",
        str(folder),
        *models,
        "--out",
        str(out),
        "--det-imgsz",
        "64",
        "--batch-size",
        "4",
        "--precision",
        "fp32",
        *CPU,
        *extra,
    ]


def audit(dataset: Path, out: Path, *models: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        "audit",
        str(dataset),
        *models,
        "--out",
        str(out),
        "--split",
        "all",
        "--max-images",
        "4",
        "--checks",
        "none",
        "--steps",
        "1",
        "--methods",
        "saliency",
        "--batch-size",
        "4",
        "--det-imgsz",
        "64",
        "--precision",
        "fp32",
        *CPU,
        *extra,
    ]


def pretrain_mae(data: Path, out: Path, tmp: Path, *extra: str) -> list[str]:
    """A tiny ViT-MAE (its options in ``tmp/tiny_mae.yaml``), one epoch at 32 px."""
    config = tmp / "tiny_mae.yaml"
    config.write_text(
        json.dumps({"model_args": TINY_MODEL, "patch_size": 8, "warmup_epochs": 0, "lr": 0.001})
    )
    return [
        "pretrain-mae",
        str(data),
        "--out",
        str(out),
        "-c",
        str(config),
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--precision",
        "fp32",
        *CPU,
        *extra,
    ]


def export(model: Path, out: Path, *extra: str) -> list[str]:
    return ["export", str(model), "--out", str(out), "--n-random", "2", *extra]


def export_skipped(out: Path, tmp: Path) -> None:
    record = json.loads((out / "export.json").read_text())
    assert [Path(s["path"]).name for s in record["samples"]["skipped"]] == ["BROKEN.jpg"]
    assert record["parity"]["passed"] and record["parity"]["n_real"] == 6
    assert (out / "model.onnx").is_file()


def not_a_model(tmp: Path) -> Path:
    path = tmp / "notes.txt"
    path.write_text("not a model")
    return path


def mae_show(checkpoint: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return [
        "mae-show",
        str(checkpoint),
        str(images),
        "--out",
        str(out),
        "--count",
        "2",
        "--precision",
        "fp32",
        *CPU,
        *extra,
    ]


def run(config: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(config), "--out", str(out), "--device", "cpu", *extra]


def both(kit: Kit) -> list[str]:
    return ["--cls", str(kit.cls_run), "--det", str(kit.det_pt)]


def shard_copy(shards: tuple[Path, Path], tmp: Path, change: Callable[[Path], None]) -> list[Path]:
    """Copies of two shards, the second changed by ``change(folder)``."""
    copies = [Path(shutil.copytree(s, tmp / s.name)) for s in shards]
    change(copies[1])
    return copies


def drop_column(name: str, table: str = "predictions.csv") -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        found = rows(folder / table)
        write_manifest(folder / table, [c for c in found[0] if c != name], found)

    return change


def merge(
    kit: Kit,
    tmp: Path,
    out: Path | None = None,
    change: Callable[[Path], None] | None = None,
    *,
    audits: bool = False,
) -> list[str]:
    """``fracdet merge`` of the predict shards (or the audit shards), the second changed by
    ``change``."""
    shards = kit.audit_shards if audits else kit.shards
    return [
        "merge",
        str(out or tmp / "out"),
        *map(str, shard_copy(shards, tmp, change) if change else shards),
    ]


def remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


# --- the cases ---------------------------------------------------------------------------------

M = "manifest.csv"
COMMAND_CASES: list[CommandCase] = [
    # train-cls
    CommandCase(
        "train-cls-weights-crafted-pickle",
        lambda k, t: train_cls(k.dataset / M, t / "out", "--weights", str(crafted_pickle(t))),
        "error",
        ("crafted.pt", "refused"),
        no_payload,
    ),
    CommandCase(
        "train-cls-weights-detector",
        lambda k, t: train_cls(k.dataset / M, t / "out", "--weights", str(k.det_pt)),
        "error",
        ("tiny_det.pt", "Ultralytics detector"),
    ),
    CommandCase(
        "train-cls-weights-wrong-shapes",
        lambda k, t: train_cls(
            k.dataset / M, t / "out", "--weights", str(wrong_shapes(k, t) / "best.safetensors")
        ),
        "error",
        ("best.safetensors", "conv1.0.weight"),
    ),
    CommandCase(
        "train-cls-every-train-image-unreadable",
        lambda k, t: train_cls(manifest_with_junk_train(k, t), t / "out"),
        "error",
        ("junk_train.csv", "training images could be read"),
    ),
    CommandCase(
        "train-cls-empty-manifest",
        lambda k, t: train_cls(empty_manifest(k, t), t / "out"),
        "error",
        ("empty.csv", "no images"),
    ),
    CommandCase(
        "train-cls-manifest-missing-column",
        lambda k, t: train_cls(manifest_without_split(k, t), t / "out"),
        "error",
        "nosplit.csv",
    ),
    CommandCase(
        "train-cls-negative-epochs",
        lambda k, t: [*train_cls(k.dataset / M, t / "out"), "--epochs", "-1"],
        "error",
        ("epochs", "-1"),
    ),
    CommandCase(
        "train-cls-output-is-a-file",
        lambda k, t: train_cls(k.dataset / M, file_output(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "train-cls-output-inside-a-file",
        lambda k, t: train_cls(k.dataset / M, inside_file(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "train-cls-existing-output",
        lambda k, t: train_cls(k.dataset / M, existing_output(t)),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "train-cls-overwrite-with-a-bad-manifest-keeps-the-old-run",
        lambda k, t: train_cls(empty_manifest(k, t), existing_output(t), "--overwrite"),
        "error",
        "empty.csv",
    ),
    # eval-cls
    CommandCase(
        "eval-cls-detector-as-classifier",
        lambda k, t: eval_cls(k.det_pt, k.dataset / M, t / "out"),
        "error",
        "tiny_det.pt",
    ),
    CommandCase(
        "eval-cls-crafted-pickle-as-classifier",
        lambda k, t: eval_cls(crafted_pickle(t), k.dataset / M, t / "out"),
        "error",
        "crafted.pt",
        no_payload,
    ),
    CommandCase(
        "eval-cls-wrong-shapes",
        lambda k, t: eval_cls(wrong_shapes(k, t), k.dataset / M, t / "out"),
        "error",
        ("best.safetensors", "conv1.0.weight"),
    ),
    CommandCase(
        "eval-cls-empty-manifest",
        lambda k, t: eval_cls(k.cls_run, empty_manifest(k, t), t / "out"),
        "error",
        "empty.csv",
    ),
    CommandCase(
        "eval-cls-manifest-missing-column",
        lambda k, t: eval_cls(k.cls_run, manifest_without_split(k, t), t / "out"),
        "error",
        "nosplit.csv",
    ),
    CommandCase(
        "eval-cls-output-is-a-file",
        lambda k, t: eval_cls(k.cls_run, k.dataset / M, file_output(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "eval-cls-output-inside-a-file",
        lambda k, t: eval_cls(k.cls_run, k.dataset / M, inside_file(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "eval-cls-existing-output",
        lambda k, t: eval_cls(k.cls_run, k.dataset / M, existing_output(t)),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "eval-cls-corrupt-image",
        lambda k, t: eval_cls(
            k.cls_run,
            small_manifest(k.dataset, t, split="test", boxed=1, count=3, junk=True),
            t / "out",
        ),
        "done",
        check=eval_cls_skipped,
    ),
    # train-det
    CommandCase(
        "train-det-classifier-as-model",
        lambda k, t: train_det(
            k.dataset, t / "out", "--model", str(k.cls_run / "best.safetensors")
        ),
        "error",
        ("best.safetensors", "--cls"),
    ),
    CommandCase(
        "train-det-classifier-run-as-model",
        lambda k, t: train_det(k.dataset, t / "out", "--model", str(k.cls_run)),
        "error",
        "cls_run",
    ),
    CommandCase(
        "train-det-negative-epochs",
        lambda k, t: [*train_det(k.dataset, t / "out"), "--epochs", "-1"],
        "error",
        ("epochs", "-1"),
    ),
    CommandCase(
        "train-det-output-is-a-file",
        lambda k, t: train_det(k.dataset, file_output(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "train-det-output-inside-a-file",
        lambda k, t: train_det(k.dataset, inside_file(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "train-det-existing-output",
        lambda k, t: train_det(k.dataset, existing_output(t).parent, "--name", "out"),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    # eval-det
    CommandCase(
        "eval-det-classifier-as-detector",
        lambda k, t: eval_det(k.cls_run, k.dataset, t / "out"),
        "error",
        "cls_run",
    ),
    CommandCase(
        "eval-det-output-is-a-file",
        lambda k, t: eval_det(k.det_pt, k.dataset, file_output(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "eval-det-output-inside-a-file",
        lambda k, t: eval_det(k.det_pt, k.dataset, inside_file(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "eval-det-existing-output",
        lambda k, t: eval_det(k.det_pt, k.dataset, existing_output(t)),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "eval-det-corrupt-image",
        lambda k, t: eval_det(k.det_pt, dataset_with_junk_image(k, t), t / "out"),
        "done",
        check=eval_det_skipped,
    ),
    # predict
    CommandCase(
        "predict-detector-as-classifier",
        lambda k, t: predict(folder_of(t), t / "out", "--cls", str(k.det_pt)),
        "error",
        "tiny_det.pt",
    ),
    CommandCase(
        "predict-classifier-as-detector",
        lambda k, t: predict(folder_of(t), t / "out", "--det", str(k.cls_run)),
        "error",
        "cls_run",
    ),
    CommandCase(
        "predict-wrong-shapes",
        lambda k, t: predict(folder_of(t), t / "out", "--cls", str(wrong_shapes(k, t))),
        "error",
        ("best.safetensors", "conv1.0.weight"),
    ),
    CommandCase(
        "predict-shard-3-of-2",
        lambda k, t: predict(folder_of(t), t / "out", *both(k), extra=("--shard", "3/2")),
        "error",
        "3/2",
    ),
    CommandCase(
        "predict-output-is-a-file",
        lambda k, t: predict(folder_of(t), file_output(t), *both(k)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "predict-output-inside-a-file",
        lambda k, t: predict(folder_of(t), inside_file(t), *both(k)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "predict-existing-output",
        lambda k, t: predict(folder_of(t), existing_output(t), *both(k)),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "predict-empty-folder",
        lambda k, t: predict(Path(t / "nothing").mkdir() or t / "nothing", t / "out", *both(k)),
        "error",
        "nothing",
    ),
    CommandCase(
        "predict-corrupt-image",
        lambda k, t: predict(folder_of(t, junk=True), t / "out", *both(k)),
        "done",
        check=predict_skipped,
    ),
    CommandCase(
        "predict-dicom-and-16-bit-png",
        lambda k, t: predict(folder_of(t, medical=True), t / "out", *both(k)),
        "done",
        check=predict_medical,
    ),
    # merge
    CommandCase(
        "merge-output-is-a-file", lambda k, t: merge(k, t, file_output(t)), "error", "{tmp}/out"
    ),
    CommandCase(
        "merge-output-inside-a-file", lambda k, t: merge(k, t, inside_file(t)), "error", "{tmp}/out"
    ),
    CommandCase(
        "merge-existing-output",
        lambda k, t: merge(k, t, existing_output(t)),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "merge-shard-missing-a-column",
        lambda k, t: merge(k, t, change=drop_column("status")),
        "error",
        "predictions.csv",
    ),
    CommandCase(
        "merge-shard-empty-table",
        lambda k, t: merge(k, t, change=lambda f: (f / "predictions.csv").write_bytes(b"")),
        "error",
        "predictions.csv",
    ),
    CommandCase(
        "merge-shard-without-table",
        lambda k, t: merge(k, t, change=remove("predictions.csv")),
        "error",
        "shard2",
    ),
    CommandCase(
        "merge-audit-output-is-a-file",
        lambda k, t: merge(k, t, file_output(t), audits=True),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "merge-audit-output-inside-a-file",
        lambda k, t: merge(k, t, inside_file(t), audits=True),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "merge-audit-existing-output",
        lambda k, t: merge(k, t, existing_output(t), audits=True),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "merge-audit-shard-without-table",
        lambda k, t: merge(k, t, change=remove("per_image.csv"), audits=True),
        "error",
        "per_image.csv",
    ),
    CommandCase(
        "merge-audit-shard-missing-a-column",
        lambda k, t: merge(k, t, change=drop_column("status", "per_image.csv"), audits=True),
        "error",
        "per_image.csv",
    ),
    # audit
    CommandCase(
        "audit-detector-as-classifier",
        lambda k, t: audit(k.audit_manifest, t / "out", "--cls", str(k.det_pt)),
        "error",
        "tiny_det.pt",
    ),
    CommandCase(
        "audit-classifier-as-detector",
        lambda k, t: audit(
            k.audit_manifest, t / "out", "--cls", str(k.cls_run), "--det", str(k.cls_run)
        ),
        "error",
        "cls_run",
    ),
    CommandCase(
        "audit-det-crafted-pickle",
        lambda k, t: audit(
            k.audit_manifest, t / "out", "--cls", str(k.cls_run), "--det", str(crafted_pickle(t))
        ),
        "error",
        "crafted.pt",
        no_payload,
    ),
    CommandCase(
        "audit-wrong-shapes",
        lambda k, t: audit(k.audit_manifest, t / "out", "--cls", str(wrong_shapes(k, t))),
        "error",
        ("best.safetensors", "conv1.0.weight"),
    ),
    CommandCase(
        "audit-empty-manifest",
        lambda k, t: audit(empty_manifest(k, t), t / "out", "--cls", str(k.cls_run)),
        "error",
        "empty.csv",
    ),
    CommandCase(
        "audit-manifest-missing-column",
        lambda k, t: audit(manifest_without_split(k, t), t / "out", "--cls", str(k.cls_run)),
        "error",
        "nosplit.csv",
    ),
    CommandCase(
        "audit-shard-3-of-2",
        lambda k, t: audit(k.audit_manifest, t / "out", *both(k), extra=("--shard", "3/2")),
        "error",
        "3/2",
    ),
    CommandCase(
        "audit-output-is-a-file",
        lambda k, t: audit(k.audit_manifest, file_output(t), *both(k)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "audit-output-inside-a-file",
        lambda k, t: audit(k.audit_manifest, inside_file(t), *both(k)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "audit-existing-output",
        lambda k, t: audit(k.audit_manifest, existing_output(t), *both(k)),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "audit-empty-folder",
        lambda k, t: audit(Path(t / "nothing").mkdir() or t / "nothing", t / "out", *both(k)),
        "error",
        "nothing",
    ),
    CommandCase(
        "audit-corrupt-image",
        lambda k, t: audit(small_manifest(k.dataset, t, junk=True), t / "out", *both(k)),
        "done",
        check=audit_skipped,
    ),
    CommandCase(
        "audit-dicom-and-16-bit-png",
        lambda k, t: audit(folder_of(t, medical=True), t / "out", *both(k)),
        "done",
        check=audit_medical,
    ),
    # pretrain-mae
    CommandCase(
        "pretrain-mae-empty-folder",
        lambda k, t: pretrain_mae(empty_folder(t), t / "out", t),
        "error",
        ("nothing", "at least 2"),
    ),
    CommandCase(
        "pretrain-mae-only-junk-images",
        lambda k, t: pretrain_mae(mae_images(t, only_junk=True), t / "out", t),
        "error",
        ("mae_images", "could be read"),
    ),
    CommandCase(
        "pretrain-mae-weights-crafted-pickle",
        lambda k, t: pretrain_mae(mae_images(t), t / "out", t, "--weights", str(crafted_pickle(t))),
        "error",
        ("crafted.pt", "not MAE weights"),
        no_payload,
    ),
    CommandCase(
        "pretrain-mae-weights-detector",
        lambda k, t: pretrain_mae(mae_images(t), t / "out", t, "--weights", str(k.det_pt)),
        "error",
        ("tiny_det.pt", "not MAE weights"),
    ),
    CommandCase(
        "pretrain-mae-weights-classifier-run",
        lambda k, t: pretrain_mae(mae_images(t), t / "out", t, "--weights", str(k.cls_run)),
        "error",
        ("cls_run", "fracdet-classifier/1"),
    ),
    CommandCase(
        "pretrain-mae-output-is-a-file",
        lambda k, t: pretrain_mae(mae_images(t), file_output(t), t),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "pretrain-mae-output-inside-a-file",
        lambda k, t: pretrain_mae(mae_images(t), inside_file(t), t),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "pretrain-mae-existing-output",
        lambda k, t: pretrain_mae(mae_images(t), existing_output(t), t),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "pretrain-mae-overwrite-with-only-junk-keeps-the-old-run",
        lambda k, t: pretrain_mae(
            mae_images(t, only_junk=True), existing_output(t), t, "--overwrite"
        ),
        "error",
        "mae_images",
    ),
    CommandCase(
        "pretrain-mae-every-train-image-unreadable",
        lambda k, t: pretrain_mae(manifest_with_junk_train(k, t), t / "out", t),
        "error",
        ("junk_train.csv", "training images could be read"),
    ),
    CommandCase(
        "pretrain-mae-corrupt-image",
        lambda k, t: pretrain_mae(mae_images(t, junk=True), t / "out", t, "--val-fraction", "0.3"),
        "done",
        check=pretrain_mae_skipped,
    ),
    # mae-show
    CommandCase(
        "mae-show-classifier-as-checkpoint",
        lambda k, t: mae_show(k.cls_run, mae_images(t), t / "out"),
        "error",
        ("cls_run", "fracdet-classifier/1"),
    ),
    CommandCase(
        "mae-show-encoder-as-checkpoint",
        lambda k, t: mae_show(k.mae_run / "encoder.safetensors", mae_images(t), t / "out"),
        "error",
        ("encoder.json", "fracdet-mae-encoder/1"),
    ),
    CommandCase(
        "mae-show-detector-as-checkpoint",
        lambda k, t: mae_show(k.det_pt, mae_images(t), t / "out"),
        "error",
        ("tiny_det.pt", "MAE checkpoint"),
    ),
    CommandCase(
        "mae-show-crafted-pickle",
        lambda k, t: mae_show(crafted_pickle(t), mae_images(t), t / "out"),
        "error",
        "crafted.pt",
        no_payload,
    ),
    CommandCase(
        "mae-show-empty-folder",
        lambda k, t: mae_show(k.mae_run, empty_folder(t), t / "out"),
        "error",
        ("nothing", "no images"),
    ),
    CommandCase(
        "mae-show-only-junk-images",
        lambda k, t: mae_show(k.mae_run, mae_images(t, only_junk=True), t / "out"),
        "error",
        ("mae_images", "could be read"),
    ),
    CommandCase(
        "mae-show-output-is-a-file",
        lambda k, t: mae_show(k.mae_run, mae_images(t), file_output(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "mae-show-output-inside-a-file",
        lambda k, t: mae_show(k.mae_run, mae_images(t), inside_file(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "mae-show-existing-output",
        lambda k, t: mae_show(k.mae_run, mae_images(t), existing_output(t)),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "mae-show-corrupt-image",
        lambda k, t: mae_show(k.mae_run, mae_images(t, junk=True), t / "out"),
        "done",
        check=mae_show_skipped,
    ),
    # run (the FracAtlas study): every refusal comes before a stage starts
    CommandCase(
        "run-source-without-fracatlas",
        lambda k, t: run(study_config(t, source=empty_folder(t)), t / "out"),
        "error",
        ("nothing", "fetch-fracatlas"),
    ),
    CommandCase(
        "run-source-with-a-bare-images-folder",
        lambda k, t: run(study_config(t, source=bare_images_folder(t)), t / "out"),
        "error",
        ("nothing", "fetch-fracatlas"),
    ),
    CommandCase(
        "run-config-not-yaml",
        lambda k, t: run(study_config(t, b"source: [unclosed\n"), t / "out"),
        "error",
        ("study.yaml", "not valid YAML"),
    ),
    CommandCase(
        "run-config-not-text",
        lambda k, t: run(study_config(t, JUNK_JPEG), t / "out"),
        "error",
        ("study.yaml", "not valid YAML"),
    ),
    CommandCase(
        "run-config-missing",
        lambda k, t: run(t / "missing.yaml", t / "out"),
        "error",
        ("missing.yaml", "not found"),
    ),
    CommandCase(
        "run-config-unknown-key",
        lambda k, t: run(study_config(t, cls_epoch=3), t / "out"),
        "error",
        ("study.yaml", "'cls_epoch'", "cls_epochs"),
    ),
    CommandCase(
        "run-profile-not-defined",
        lambda k, t: run(
            study_config(t, profiles={"cpu": {}, "gpu": {}}), t / "out", "--profile", "gpx"
        ),
        "error",
        ("'gpx'", "cpu, gpu"),
    ),
    CommandCase(
        "run-profile-unknown-key",
        lambda k, t: run(study_config(t, profiles={"cpu": {"cls_epoch": 1}}), t / "out"),
        "error",
        ("profiles.cpu", "'cls_epoch'"),
    ),
    CommandCase(
        "run-output-is-a-file",
        lambda k, t: run(study_config(t), file_output(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "run-output-inside-a-file",
        lambda k, t: run(study_config(t), inside_file(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "run-existing-output",
        lambda k, t: run(study_config(t), existing_output(t)),
        "error",
        ("{tmp}/out", "not a study folder", "--overwrite"),
    ),
    CommandCase(
        "export-not-a-model",
        lambda k, t: export(not_a_model(t), t / "out"),
        "error",
        ("notes.txt", "not a model to export"),
    ),
    CommandCase(
        "export-crafted-pickle",
        lambda k, t: export(crafted_pickle(t), t / "out"),
        "error",
        ("crafted.pt", "--trust-pickle"),
        no_payload,
    ),
    CommandCase(
        "export-onnx-source",
        lambda k, t: export(not_a_model(t).rename(t / "model.onnx"), t / "out"),
        "error",
        ("model.onnx", "already an ONNX model"),
    ),
    CommandCase(
        "export-output-is-a-file",
        lambda k, t: export(k.cls_run, file_output(t)),
        "error",
        "{tmp}/out",
    ),
    CommandCase(
        "export-existing-output",
        lambda k, t: export(k.cls_run, existing_output(t)),
        "error",
        ("{tmp}/out", "--overwrite"),
    ),
    CommandCase(
        "export-corrupt-image",
        lambda k, t: export(k.cls_run, t / "out", "--images", str(mae_images(t, junk=True))),
        "done",
        check=export_skipped,
    ),
]
