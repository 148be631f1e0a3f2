"""Every bad input through train-cls, eval-cls, train-det, eval-det, predict, merge, audit,
pretrain-mae, mae-show and run.

One clear line where the command must stop, or the bad item skipped and recorded while the
rest is done. Whatever happens: no traceback, no crafted pickle run, nothing written outside
the output folder (the case runs in its own working directory, which is watched too).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest
from conftest import save_image
from test_mae import TINY_MODEL
from typer.testing import CliRunner

from fracdet.audit import AuditConfig, run_audit
from fracdet.cli import app
from fracdet.mae.train import MAETrainConfig, pretrain_mae
from fracdet.predict import PredictConfig, predict_folder

from .command_corpus import COMMAND_CASES, COMMANDS, CommandCase, Kit, mae_images, small_manifest
from .test_bad_inputs import snapshot

runner = CliRunner()


@pytest.fixture(scope="module")
def kit(
    tmp_path_factory: pytest.TempPathFactory, phantom_dataset: Path, tiny_models: tuple[Path, Path]
) -> Kit:
    """The tiny models (copied in: the kit's folder is watched), finished predict and audit shards,
    a small audit manifest, a tiny MAE run."""
    root = tmp_path_factory.mktemp("kit")
    cls_run = Path(shutil.copytree(tiny_models[0], root / "cls_run"))
    det = Path(shutil.copy(tiny_models[1], root / "tiny_det.pt"))
    folder = root / "shard_images"
    for k in range(4):
        save_image(folder / f"x{k}.png", 40, 30, seed=k)
    shards = tuple(root / f"shard{k}" for k in (1, 2))
    for k, out in enumerate(shards, start=1):
        predict_folder(
            PredictConfig(
                folder=folder,
                output=out,
                cls=cls_run,
                shard=f"{k}/2",
                workers=0,
                device="cpu",
                precision="fp32",
            )
        )
    audit_shards = tuple(root / f"audit_shard{k}" for k in (1, 2))
    mae_run = root / "mae_run"
    pretrain_mae(
        MAETrainConfig(
            data=mae_images(root),
            output=mae_run,
            image_size=32,
            patch_size=8,
            model_args=TINY_MODEL,
            epochs=1,
            batch_size=8,
            lr=1e-3,
            warmup_epochs=0.0,
            precision="fp32",
            workers=0,
            device="cpu",
        )
    )
    kit = Kit(
        root,
        cls_run,
        det,
        phantom_dataset,
        shards,
        root / "audit_manifest.csv",
        audit_shards,
        mae_run,
    )  # type: ignore[arg-type]
    small_manifest(phantom_dataset, root).rename(kit.audit_manifest)
    for k, out in enumerate(audit_shards, start=1):
        run_audit(
            AuditConfig(
                dataset=kit.audit_manifest,
                output=out,
                classifiers=(kit.cls_run,),
                split="all",
                methods=("saliency",),
                checks=(),
                steps=1,
                batch_size=2,
                shard=f"{k}/2",
                workers=0,
                device="cpu",
                precision="fp32",
            )
        )
    return kit


_CARD_FILES = ("MODEL_CARD.md", "model_card.json")


def _without_cards(found: dict[str, str]) -> dict[str, str]:
    """A snapshot without the model cards: the one write a finished command makes beside a
    model on purpose (a failed command may not even touch those)."""
    return {path: h for path, h in found.items() if not path.endswith(_CARD_FILES)}


@pytest.mark.parametrize("case", COMMAND_CASES, ids=[c.name for c in COMMAND_CASES])
def test_command_handles_bad_input(
    case: CommandCase, kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a stray relative write lands where it is seen
    args = case.build(kit, tmp_path)
    out = tmp_path / "out"
    watched = (tmp_path, kit.root, kit.dataset)
    before = [snapshot(root, out if case.expect == "done" else None) for root in watched]

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["-q", *args])

    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output
    after = [snapshot(root, out if case.expect == "done" else None) for root in watched]
    if case.expect == "done":  # eval-cls, eval-det and audit update the model card beside the model
        before, after = ([_without_cards(s) for s in snaps] for snaps in (before, after))
    assert after == before, "a file was written, changed or left behind " + (
        "outside the output folder" if case.expect == "done" else "by a command that failed"
    )
    if case.check is not None and case.expect == "error":
        case.check(out, tmp_path)
    lines = [line for line in result.output.splitlines() if line.strip()]
    if case.expect == "error":
        assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error: "), (
            result.output
        )
        for hint in (case.hint,) if isinstance(case.hint, str) else case.hint:
            assert hint.format(tmp=tmp_path) in lines[0], (
                f"the error does not name {hint.format(tmp=tmp_path)}: {lines[0]}"
            )
        return
    assert result.exit_code == 0, result.output
    # A Python warning from fracdet's own code is noise on the user's terminal (third-party ones are
    # not ours).
    assert not [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in seen
        if f"{os.sep}fracdet{os.sep}" in w.filename
    ]
    assert case.check is not None
    case.check(out, tmp_path)


def test_the_cases_cover_every_command() -> None:
    """Guards the suite itself: each command has cases, names are unique, every input kind is
    tried."""
    names = [c.name for c in COMMAND_CASES]
    assert len(names) == len(set(names))
    for command in COMMANDS:
        assert sum(c.command == command for c in COMMAND_CASES) >= 4, command
    for kind in ("-output-is-a-file", "-existing-output"):
        assert {c.command for c in COMMAND_CASES if c.name.endswith(kind)} == set(COMMANDS)
    for command in ("eval-cls", "eval-det", "predict", "audit", "pretrain-mae", "mae-show"):
        assert any(
            c.name == f"{command}-corrupt-image" and c.expect == "done" for c in COMMAND_CASES
        )
