"""Benchmark `fracdet predict` and the audit's plain-folder mode over a folder of many small files.

What: one flat folder of ``--count`` 8x8 PNGs (default 100,000; the files are written once and
listed by the scanner, then decoded lazily, one at a time, by predict's DataLoader), and the
same for a tenth of them. In a fresh interpreter each, it measures

* ``scan``: :func:`fracdet.predict.inputs.list_inputs` (predict's walk: every entry classified
  by suffix or DICOM magic, no decoding),
* ``audit-folder``: :func:`fracdet.audit.inputs.load_inputs` on the plain folder (the same walk,
  plus the audit's items),
* ``predict``: a whole ``predict_folder`` run with a tiny random resnet10t classifier at 32 px
  (every file decoded, classified and written to ``predictions.csv``),

each with its wall time, the time until the first progress update (the scan's count moves from
the first entry, not after listing everything) and the peak RSS above the interpreter's own
baseline (VmHWM after the imports). ``--before PATH`` runs the scan variants again with the
checkout at PATH on ``sys.path`` (e.g. the main branch, whose walk listed each folder into
memory first): the before/after of the streaming walk.

Why: the issue asks for memory flat in the number of files: the peak RSS at N over the peak at
N/10 is the figure (target: at most 1.25), with what each file adds (bytes per file, from the
peaks above baseline): the sorted list of names every run needs (ids are positions in it).

``--predict-count M`` adds one more whole predict run over M files (off by default: at the
~50 images/s of a shared 2-core CPU, 100,000 files take about half an hour), reported with its
images/s and its time and peak RSS over the run at ``--count``: whether a whole run stays linear
in time and flat in memory past the sizes the default measures.

Run: ``.venv/bin/python benchmarks/scale.py [--count N] [--skip-predict] [--predict-count M]
[--before PATH] [--workdir DIR] [--json PATH] [--check]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _bench import add_run_options, print_rows, run_and_report  # noqa: E402 - sibling helper; scripts run as `python benchmarks/x.py`

ROOT = Path(__file__).resolve().parents[1]
PEAK_RATIO_TARGET = (
    1.25  # peak RSS at N over peak at N/10: "about the same" (as benchmarks/predict)
)

# One probe per fresh interpreter: imports, reads its baseline high-water mark, runs the variant
# with the scanner's progress wrapped to time its first update, then prints one JSON line.
_PROBE = r"""
import json, sys, time
sys.path.insert(0, {root!r})
variant, folder, extra = sys.argv[1], sys.argv[2], sys.argv[3:]

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import fracdet.data.scan as scan
from fracdet.audit.inputs import load_inputs
from fracdet.log import setup_logging
from fracdet.predict import PredictConfig, predict_folder
from fracdet.predict.inputs import list_inputs
setup_logging(quiet=False)
first = []
inner = getattr(scan, "progress", None)
def timed(items, *args, **kwargs):
    for item in items:
        if not first:
            first.append(time.perf_counter())
        yield item
if inner is not None:
    scan.progress = timed
base = hwm_mb()
start = time.perf_counter()
if variant == "scan":
    n = len(list_inputs(__import__("pathlib").Path(folder))[0])
elif variant == "audit-folder":
    n = len(load_inputs(__import__("pathlib").Path(folder), split="all").items)
else:
    summary = predict_folder(PredictConfig(folder=folder, output=extra[1], cls=extra[0],
        workers=0, batch_size=256, device="cpu", precision="fp32"))
    n = summary.n_ok
seconds = time.perf_counter() - start
print(json.dumps({{"n": n, "seconds": seconds, "first_progress_s": (first[0] - start) if first
    else None, "base_mb": base, "peak_mb": hwm_mb()}}))
"""


@dataclass
class Results:
    count: int
    rows: list[dict] = field(default_factory=list)

    def _get(self, variant: str, n: int, code: str = "after") -> dict | None:
        return next(
            (r for r in self.rows if (r["variant"], r["files"], r["code"]) == (variant, n, code)),
            None,
        )

    def summary(self) -> dict[str, float]:
        """Per variant: the peak RSS at N over the peak at N/10 (1.0 is flat), and what each
        extra file costs (the sorted list of names, the items), from the difference."""
        out = {}
        for variant in ("scan", "audit-folder", "predict"):
            big, small = self._get(variant, self.count), self._get(variant, self.count // 10)
            if big and small:
                out[f"{variant}_peak_ratio"] = round(big["peak_mb"] / small["peak_mb"], 3)
                extra = (big["peak_mb"] - big["base_mb"]) - (small["peak_mb"] - small["base_mb"])
                per_file = extra * 2**20 / (big["files"] - small["files"])
                out[f"{variant}_bytes_per_file"] = round(per_file)
        predict = [r for r in self.rows if r["variant"] == "predict"]
        base, large = self._get("predict", self.count), predict[-1] if predict else None
        if base and large and large["files"] != self.count:  # the --predict-count run
            out["predict_large_files"] = large["files"]
            out["predict_large_images_per_s"] = round(large["n"] / large["seconds"], 1)
            out["predict_large_time_ratio"] = round(large["seconds"] / base["seconds"], 3)
            out["predict_large_peak_ratio"] = round(large["peak_mb"] / base["peak_mb"], 3)
        return out

    def passed(self) -> bool:
        ratio = self.summary().get("scan_peak_ratio")
        return ratio is None or ratio <= PEAK_RATIO_TARGET


def _make_folder(folder: Path, count: int) -> float:
    """``count`` 8x8 grey PNGs (the same bytes: creating inodes is what costs here)."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    folder.mkdir(parents=True)
    start = time.perf_counter()
    for i in range(count):
        with open(folder / f"img{i:06d}.png", "wb") as fh:
            fh.write(data)
    return time.perf_counter() - start


def _tiny_classifier(root: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    import torch

    from fracdet.cls.checkpoint import ClassifierMeta, save_classifier
    from fracdet.cls.model import create_classifier

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
    return root / "cls_run"


def _probe(code: Path, variant: str, folder: Path, *extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "YOLO_OFFLINE": "1"}
    env["COLUMNS"] = "100"
    script = _PROBE.format(root=str(code))
    done = subprocess.run(
        [sys.executable, "-c", script, variant, str(folder), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=folder.parent,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def benchmark(args: argparse.Namespace, work: Path) -> Results:
    results = Results(args.count)
    cls_run = None if args.skip_predict else _tiny_classifier(work)
    for n in (args.count // 10, args.count):
        folder = work / f"files{n}"
        made = _make_folder(folder, n)
        print(f"{n} files written in {made:.1f} s", file=sys.stderr)
        codes = [("after", ROOT)] + ([("before", args.before)] if args.before else [])
        for code_name, code in codes:
            for variant in ("scan", "audit-folder"):
                row = _probe(code, variant, folder)
                results.rows.append({"variant": variant, "files": n, "code": code_name, **row})
                print(results.rows[-1], file=sys.stderr)
        if cls_run is not None:
            out = work / f"out{n}"
            row = _probe(ROOT, "predict", folder, str(cls_run), str(out))
            results.rows.append({"variant": "predict", "files": n, "code": "after", **row})
            print(results.rows[-1], file=sys.stderr)
            shutil.rmtree(out)
        shutil.rmtree(folder)
    if cls_run is not None and args.predict_count:
        _predict_only(results, work, cls_run, args.predict_count)
    return results


def _predict_only(results: Results, work: Path, cls_run: Path, n: int) -> None:
    """One more whole predict run over ``n`` files (no scans: the default sizes cover them)."""
    folder, out = work / f"files{n}", work / f"out{n}"
    made = _make_folder(folder, n)
    print(f"{n} files written in {made:.1f} s", file=sys.stderr)
    row = _probe(ROOT, "predict", folder, str(cls_run), str(out))
    results.rows.append({"variant": "predict", "files": n, "code": "after", **row})
    print(results.rows[-1], file=sys.stderr)
    shutil.rmtree(out)
    shutil.rmtree(folder)


def print_table(results: Results) -> None:
    rows = []
    for r in results.rows:
        first = "-" if r["first_progress_s"] is None else f"{r['first_progress_s'] * 1000:.0f} ms"
        rows.append(
            (
                r["variant"],
                r["code"],
                f"{r['files']:,}",
                f"{r['seconds']:.2f}",
                f"{r['files'] / r['seconds']:,.0f}",
                first,
                f"{r['base_mb']:.0f}",
                f"{r['peak_mb'] - r['base_mb']:.1f}",
            )
        )
    header = (
        "variant",
        "code",
        "files",
        "seconds",
        "files/s",
        "first progress",
        "baseline MB",
        "peak above baseline MB",
    )
    print_rows(header, rows)
    summary = results.summary()
    large = summary.get("predict_large_files")
    for key, value in summary.items():
        if key.startswith("predict_large"):
            against = f"{large:,} vs {results.count:,} files" if key.endswith("ratio") else ""
        else:
            against = f"{results.count:,} vs {results.count // 10:,} files"
        print(f"{key}: {value}" + (f" ({against})" if against else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument(
        "--predict-count",
        type=int,
        default=0,
        help="also a whole predict run over this many files, compared with the one at --count",
    )
    parser.add_argument("--before", type=Path, help="a checkout to compare the scan with")
    add_run_options(parser)
    args = parser.parse_args()
    return run_and_report(
        args, "fracdet-scale-", benchmark, print_table, {"scan_peak_ratio": PEAK_RATIO_TARGET}
    )


if __name__ == "__main__":
    sys.exit(main())
