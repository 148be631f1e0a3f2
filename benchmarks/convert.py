"""Benchmark ``fracdet convert`` against a plain ``cp -al`` of the same FracAtlas-layout tree.

What: generate a phantom FracAtlas-layout tree (default 4,000 images at 128 px), then time

* ``convert`` called in-process (hard links, default targets yolo + coco + manifest),
* the whole ``fracdet convert`` CLI as a subprocess (Python start-up and imports included),
* ``cp -al SRC DST`` as a subprocess (the file-system baseline: one hard link per file),

and measure the peak resident memory of a conversion run in a fresh interpreter.

Why: converting with links should be bound by the file system, not by Python. The targets are
a convert time of at most 3x that of ``cp -al`` and a peak RSS under 500 MB.

Machines are noisy, so every variant is warmed up once (page and dentry caches filled, lazy
imports done), then measured over several rounds in rotating order; the table reports the
median of each variant and the median of the per-round ratios. Outputs are removed before
each timed run (untimed), so no variant pays for deleting the previous output.

Run: ``.venv/bin/python benchmarks/convert.py [--count N] [--size PX] [--rounds R]
[--workdir DIR] [--json PATH] [--check]``. Exits 1 only when ``--check`` is given and a
target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _bench import add_run_options, print_rows, run_and_report  # noqa: E402 - sibling helper; scripts run as `python benchmarks/x.py`

RATIO_TARGET = 3.0
RSS_TARGET_MB = 500.0

# Peak-memory probe: a fresh interpreter that imports the library and converts once.
_CONVERT_SNIPPET = """
import sys
from pathlib import Path
from fracdet.data.convert import ConvertConfig, convert
from fracdet.log import setup_logging
setup_logging(quiet=True)
result = convert(ConvertConfig(source=Path(sys.argv[1]), output=Path(sys.argv[2]), overwrite=True))
assert result.n_images > 0, result
"""


@dataclass
class Results:
    """Everything measured in one run; written as JSON with ``--json``."""

    count: int
    size: int
    rounds: int
    n_images: int = 0
    n_files_in_tree: int = 0
    generate_s: float = 0.0
    convert_s: list[float] = field(default_factory=list)
    cli_s: list[float] = field(default_factory=list)
    cp_s: list[float] = field(default_factory=list)
    floor_s: list[float] = field(default_factory=list)
    ratio: list[float] = field(default_factory=list)
    floor_ratio: list[float] = field(default_factory=list)
    cli_ratio: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    cli_peak_rss_mb: float = 0.0
    machine: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Medians of the timings and of the per-round ratios."""
        return {
            "convert_s": statistics.median(self.convert_s),
            "cli_s": statistics.median(self.cli_s),
            "cp_s": statistics.median(self.cp_s),
            "floor_s": statistics.median(self.floor_s),
            "ratio": statistics.median(self.ratio),
            "floor_ratio": statistics.median(self.floor_ratio),
            "cli_ratio": statistics.median(self.cli_ratio),
            "peak_rss_mb": self.peak_rss_mb,
            "cli_peak_rss_mb": self.cli_peak_rss_mb,
        }

    def passed(self) -> bool:
        s = self.summary()
        return s["ratio"] <= RATIO_TARGET and s["peak_rss_mb"] < RSS_TARGET_MB


def machine_info(path: Path) -> dict[str, str]:
    """Cores, CPU model, Python and the file system holding ``path``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs_type = "unknown"
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=True)
        fs_type = out.stdout.splitlines()[-1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "filesystem": fs_type,
    }


def remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def run_checked(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS of one child process, read from its own rusage (``wait4``), in MB."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    # Linux reports kilobytes, macOS bytes.
    kib = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return kib / 1024


def cli_command() -> list[str]:
    """The console script next to this interpreter (what users run), else ``-m fracdet``."""
    script = Path(sys.executable).with_name("fracdet")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fracdet"]


def generate_tree(src: Path, count: int, size: int) -> float:
    from data_tools.phantoms import PhantomConfig, generate_phantoms

    return timed(
        lambda: generate_phantoms(
            PhantomConfig(output=src, count=count, size=size, seed=0, overwrite=True)
        )
    )


def file_system_floor(src: Path, out: Path, n_new_files: int) -> None:
    """``cp -al`` plus creating the files a YOLO dataset must hold that no link can provide.

    ``convert`` writes one label file per image (empty for negatives, as FracAtlas does);
    ``cp -al`` creates no file at all, so it cannot see that cost. This is the floor set by
    the file system for the output ``convert`` must produce.
    """
    run_checked(["cp", "-al", str(src), str(out)])
    new = out / "_labels"
    new.mkdir()
    for i in range(n_new_files):
        (new / f"{i}.txt").write_bytes(b"")


def benchmark(args: argparse.Namespace, work: Path) -> Results:
    from fracdet.data.convert import ConvertConfig, convert
    from fracdet.log import setup_logging

    setup_logging(quiet=True)
    results = Results(count=args.count, size=args.size, rounds=args.rounds)
    results.machine = machine_info(work)
    names = ("src", "out_lib", "out_cli", "out_cp", "out_floor")
    src, out_lib, out_cli, out_cp, out_floor = (work / n for n in names)

    print(f"generating {args.count} phantoms at {args.size} px in {src} ...", flush=True)
    results.generate_s = generate_tree(src, args.count, args.size)
    results.n_files_in_tree = sum(len(files) for _, _, files in os.walk(src))

    n_images: list[int] = []

    def run_lib() -> None:
        result = convert(ConvertConfig(source=src, output=out_lib, overwrite=True))
        n_images.append(result.n_images)

    cli = [*cli_command(), "--quiet", "convert", str(src), str(out_cli)]
    variants: dict[str, tuple[Path, Callable[[], None]]] = {
        "convert": (out_lib, run_lib),
        "cli": (out_cli, lambda: run_checked(cli)),
        "cp": (out_cp, lambda: run_checked(["cp", "-al", str(src), str(out_cp)])),
        "floor": (out_floor, lambda: file_system_floor(src, out_floor, args.count)),
    }

    def measure(name: str) -> float:
        out, func = variants[name]
        remove(out)
        return timed(func)

    print("warm-up ...", flush=True)
    for name in variants:
        measure(name)

    order = list(variants)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(args.rounds):
        # Rotate the order so no variant always runs first (or right after another).
        rotated = order[i % len(order) :] + order[: i % len(order)]
        if i % 2:
            rotated.reverse()
        for name in rotated:
            times[name].append(measure(name))
        row = {name: times[name][-1] for name in variants}
        print(
            f"round {i + 1}/{args.rounds} ({' > '.join(rotated)}): convert {row['convert']:.3f} s,"
            f" cli {row['cli']:.3f} s, cp -al {row['cp']:.3f} s,"
            f" ratio {row['convert'] / row['cp']:.2f}x",
            flush=True,
        )
    results.convert_s, results.cli_s, results.cp_s = times["convert"], times["cli"], times["cp"]
    results.floor_s = times["floor"]
    results.floor_ratio = [c / b for c, b in zip(results.convert_s, results.floor_s, strict=True)]
    results.ratio = [c / b for c, b in zip(results.convert_s, results.cp_s, strict=True)]
    results.cli_ratio = [c / b for c, b in zip(results.cli_s, results.cp_s, strict=True)]
    results.n_images = n_images[-1]

    print("peak memory ...", flush=True)
    remove(out_lib)
    results.peak_rss_mb = peak_rss_mb(
        [sys.executable, "-c", _CONVERT_SNIPPET, str(src), str(out_lib)]
    )
    remove(out_cli)
    results.cli_peak_rss_mb = peak_rss_mb(cli)
    for out, _ in variants.values():
        remove(out)
    return results


def print_table(results: Results) -> None:
    s = results.summary()
    m = results.machine
    print()
    print(
        f"{results.n_images} images converted ({results.n_files_in_tree} files in the tree,"
        f" {results.size} px); {m['cores']} cores, {m['cpu']}, {m['filesystem']};"
        f" median of {results.rounds} rounds"
    )
    rows = [
        ("cp -al (baseline)", f"{s['cp_s']:.3f} s", "1.00x", "", ""),
        (
            "convert (in-process)",
            f"{s['convert_s']:.3f} s",
            f"{s['ratio']:.2f}x",
            f"<= {RATIO_TARGET:.0f}x",
            "ok" if s["ratio"] <= RATIO_TARGET else "MISSED",
        ),
        ("fracdet convert (CLI)", f"{s['cli_s']:.3f} s", f"{s['cli_ratio']:.2f}x", "", ""),
        ("cp -al + create label files", f"{s['floor_s']:.3f} s", "", "", ""),
        ("convert vs that floor", f"{s['floor_ratio']:.2f}x", "", "", ""),
        (
            "peak RSS, convert",
            f"{s['peak_rss_mb']:.0f} MB",
            "",
            f"< {RSS_TARGET_MB:.0f} MB",
            "ok" if s["peak_rss_mb"] < RSS_TARGET_MB else "MISSED",
        ),
        ("peak RSS, CLI", f"{s['cli_peak_rss_mb']:.0f} MB", "", "", ""),
    ]
    header = ("measure", "value", "vs cp -al", "target", "")
    print_rows(header, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4000, help="images in the tree (4000)")
    parser.add_argument("--size", type=int, default=128, help="long side in pixels (128)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (5)")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.count < 1:
        parser.error("--rounds and --count must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    return run_and_report(
        args,
        "bench-convert-",
        benchmark,
        print_table,
        {"ratio_max": RATIO_TARGET, "peak_rss_mb_max": RSS_TARGET_MB},
    )


if __name__ == "__main__":
    sys.exit(main())
