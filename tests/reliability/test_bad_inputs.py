"""Every bad input through ``fracdet convert``: one clear line, or the item skipped and recorded.

Each case builds a small good dataset, breaks one thing, and runs the CLI. Whatever happens:
no traceback, nothing written (or left behind) outside the output folder, sources untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fracdet.cli import app

from .corpus import CASES, Case

runner = CliRunner()


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every path under ``root`` but ``skip`` (a folder), with a content hash for files ("dir" for
    folders)."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        for d in dirs:
            found[os.path.join(folder, d)] = "dir"
        for f in files:
            path = Path(folder, f)
            found[str(path)] = (
                "link" if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
            )
    return found


def output_images(out: Path) -> dict[str, Path]:
    return (
        {p.name: p for p in (out / "images").rglob("*") if p.is_file()}
        if (out / "images").is_dir()
        else {}
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_convert_handles_bad_input(case: Case, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    source = case.build(corpus)
    out = tmp_path / "out"
    before = snapshot(tmp_path, out)

    result = runner.invoke(app, ["-q", "convert", str(source), str(out)])

    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    assert "Traceback" not in result.output
    assert snapshot(tmp_path, out) == before, (
        "a file outside the output folder was written, changed or left behind"
    )
    secret = corpus / "secret.jpg"
    if (
        secret.exists()
    ):  # a path in the annotations reaches this image: it must not be linked or copied in
        digest = hashlib.sha256(secret.read_bytes()).digest()
        assert not [
            p
            for p in output_images(out).values()
            if p.stat().st_ino == secret.stat().st_ino
            or hashlib.sha256(p.read_bytes()).digest() == digest
        ]

    lines = [line for line in result.output.splitlines() if line.strip()]
    if case.expect == "error":
        assert result.exit_code != 0 and not out.exists()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        assert case.hint in lines[0], f"the error does not name {case.hint}: {lines[0]}"
        return

    assert result.exit_code == 0, result.output
    report = json.loads((out / "convert_report.json").read_text())
    assert report["images_written"] == case.images, report["problems"]
    recorded = [p for p in report["problems"] if case.hint in p["file"] or case.hint in p["detail"]]
    if case.kind is not None:
        assert any(p["kind"] == case.kind and p["action"] for p in recorded), (
            f"no {case.kind} problem naming {case.hint}: {report['problems']}"
        )
    if case.expect == "kept":
        assert case.hint in output_images(out), f"{case.hint} is not in the output"
        assert not [p for p in recorded if "skipped" in p["action"]]


def test_the_corpus_covers_every_layout() -> None:
    """Guards the suite itself: each layout has error cases and recorded cases, names are unique."""
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 45
    for prefix in ("image-", "yolo-", "coco-", "fracatlas-"):
        assert any(c.name.startswith(prefix) for c in CASES)
    assert {c.expect for c in CASES} == {"error", "recorded", "kept"}
