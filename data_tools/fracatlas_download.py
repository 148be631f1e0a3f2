"""Download, verify and unpack the real FracAtlas archive from figshare.

FracAtlas: I. Abedeen, M. A. Rahman, F. Z. Prottyasha, T. Ahmed, T. M. Chowdhury and
S. Shatabda, "FracAtlas: A Dataset for Fracture Classification, Localization and Segmentation
of Musculoskeletal Radiographs", Scientific Data 10, 521 (2023), doi:10.1038/s41597-023-02432-4.
Licence: CC BY 4.0 (attribute with the citation above). Distributed on figshare as article
22363012: https://figshare.com/articles/dataset/The_dataset/22363012

:func:`fetch_fracatlas` reads the article from the figshare public API (standard library
only), downloads each file with a progress bar, checks its size and MD5 against the API,
extracts the zip (refusing entries that would escape the target) into a temporary folder next
to the output and renames it into place, then checks the layout with :func:`verify_fracatlas`.
Without internet, download the zip by hand and use :func:`extract_fracatlas_zip`
(``fracdet fetch-fracatlas --from-zip FILE OUT``). :func:`get_fracatlas` is the one call
behind that command: download or extract, then the verification report.

:func:`verify_fracatlas` checks the folders and files and compares counts with the published
numbers; a missing piece is an error, a count mismatch only a warning (a partial copy is still
usable). Truncated JPEGs are not checked here: ``fracdet convert`` reports them.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import logging
import math
import shutil
import urllib.error
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO
from urllib.request import Request, urlopen

from fracdet import __version__
from fracdet.data.coco import parse_coco
from fracdet.data.fracatlas import COCO_FILE, SPLIT_DIR, SPLIT_FILES, VOC_DIR, YOLO_DIR
from fracdet.data.scan import list_images
from fracdet.errors import DataError, OutputExistsError
from fracdet.fsutil import atomic_output_dir
from fracdet.log import progress

__all__ = [
    "FIGSHARE_ARTICLE_ID",
    "FIGSHARE_API_URL",
    "FIGSHARE_PAGE",
    "EXPECTED_COUNTS",
    "VerifyReport",
    "get_fracatlas",
    "fetch_fracatlas",
    "extract_fracatlas_zip",
    "verify_fracatlas",
]

logger = logging.getLogger(f"fracdet.{__name__}")

FIGSHARE_ARTICLE_ID = 22363012
FIGSHARE_API_URL = "https://api.figshare.com/v2/articles/{id}"
FIGSHARE_PAGE = "https://figshare.com/articles/dataset/The_dataset/22363012"
TREE_NAME = "FracAtlas"
CHUNK_SIZE = 1 << 20

#: Published counts of the full dataset (Abedeen et al. 2023).
EXPECTED_COUNTS: dict[str, int] = {
    "dataset_csv_rows": 4083,
    "fractured_images": 717,
    "non_fractured_images": 3366,
    "coco_images": 717,
    "coco_annotations": 922,
}
_COUNT_LABELS: dict[str, str] = {
    "dataset_csv_rows": "dataset.csv rows",
    "fractured_images": "images in images/Fractured",
    "non_fractured_images": "images in images/Non_fractured",
    "coco_images": f"images in {COCO_FILE.as_posix()}",
    "coco_annotations": f"annotations in {COCO_FILE.as_posix()}",
}
_REQUIRED: tuple[tuple[Path, str], ...] = (
    (Path("images", "Fractured"), "dir"),
    (Path("images", "Non_fractured"), "dir"),
    (COCO_FILE, "file"),
    (VOC_DIR, "dir"),
    (YOLO_DIR, "dir"),
    (Path("dataset.csv"), "file"),
    *((SPLIT_DIR / f"{split}.csv", "file") for split in SPLIT_FILES),
)
_JUNK_PREFIXES = ("__MACOSX/",)
# URLError (HTTPError included) and TimeoutError (socket.timeout) are OSErrors; named for clarity.
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException)


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_fracatlas` found.

    ``root`` is the folder holding ``images/``, ``Annotations/``, ``dataset.csv`` and
    ``Utilities/``; ``counts`` the numbers found (keys of :data:`EXPECTED_COUNTS` plus
    ``split_<name>`` rows); ``warnings`` one line per count that differs from the published one.
    """

    root: Path
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every count matches the full published dataset."""
        return not self.warnings

    def line(self) -> str:
        """One line for a person: where the tree is, what it holds, what to run next."""
        fractured = self.counts.get("fractured_images", 0)
        intact = self.counts.get("non_fractured_images", 0)
        return (
            f"FracAtlas tree at {self.root} ({fractured} fractured, "
            f"{intact} non-fractured images); run `fracdet convert {self.root} OUT`"
        )


def _offline_hint() -> str:
    return (
        f"download the zip by hand from {FIGSHARE_PAGE} and run "
        "`fracdet fetch-fracatlas --from-zip FILE OUT` "
        "(or point `fracdet convert` at an extracted copy)"
    )


def _network_error(url: str, exc: BaseException) -> DataError:
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        reason = str(exc.reason)
    else:
        reason = str(exc) or type(exc).__name__
    reason = " ".join(reason.split())
    return DataError(
        f"cannot download FracAtlas from {url} ({reason}): the download needs internet; "
        f"offline, {_offline_hint()}"
    )


def _open(url: str, timeout: float, accept: str) -> BinaryIO:
    request = Request(url, headers={"User-Agent": f"fracdet/{__version__}", "Accept": accept})
    try:
        return urlopen(request, timeout=timeout)
    except _NETWORK_ERRORS as exc:
        raise _network_error(url, exc) from exc


def _read_article(api_url: str, article_id: int, timeout: float) -> list[dict[str, Any]]:
    url = api_url.format(id=article_id)
    logger.info("reading figshare article %s", url)
    with _open(url, timeout, "application/json") as response:
        try:
            raw = response.read()
        except _NETWORK_ERRORS as exc:
            raise _network_error(url, exc) from exc
    try:
        article = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"figshare API answered something that is not JSON ({exc})", url) from None
    files = article.get("files") if isinstance(article, dict) else None
    if not isinstance(files, list) or not files:
        raise DataError("figshare article lists no files", url)
    for entry in files:
        if not isinstance(entry, dict) or not {"name", "size", "download_url"} <= entry.keys():
            raise DataError("figshare file entry lacks name, size or download_url", url)
    return files


def _safe_name(name: str) -> str:
    base = PurePosixPath(str(name).replace("\\", "/")).name
    if base in ("", ".", ".."):
        raise DataError(f"figshare file name {name!r} cannot be used as a file name")
    return base


def _chunks(response: BinaryIO, url: str, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Read ``response`` in chunks; a network failure mid-way becomes a :class:`DataError`."""
    while True:
        try:
            chunk = response.read(size)
        except _NETWORK_ERRORS as exc:
            raise _network_error(url, exc) from exc
        if not chunk:
            return
        yield chunk


def _download(entry: dict[str, Any], folder: Path, timeout: float) -> Path:
    """Stream one figshare file into ``folder``; check its size and MD5."""
    name = _safe_name(entry["name"])
    url = str(entry["download_url"])
    expected_size = int(entry["size"])
    expected_md5 = str(entry.get("computed_md5") or entry.get("supplied_md5") or "").lower()
    target = folder / name
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    logger.info("downloading %s (%.1f MB) from %s", name, expected_size / 1e6, url)
    with _open(url, timeout, "*/*") as response, target.open("wb") as sink:
        total = max(1, math.ceil(expected_size / CHUNK_SIZE))
        for chunk in progress(_chunks(response, url), f"downloading {name} (MiB)", total=total):
            sink.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    if written != expected_size:
        raise DataError(
            f"downloaded {written} bytes, figshare lists {expected_size} (download cut short?); "
            f"retry, or {_offline_hint()}",
            name,
        )
    actual_md5 = digest.hexdigest()
    if not expected_md5:
        logger.warning("%s: figshare publishes no MD5; only the size was checked", name)
    elif actual_md5 != expected_md5:
        raise DataError(f"MD5 mismatch: expected {expected_md5}, got {actual_md5}", name)
    else:
        logger.info("%s: size and MD5 %s match figshare", name, actual_md5)
    return target


def _unsafe_entry(name: str, dest: Path) -> bool:
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(name).drive or PureWindowsPath(name).root:
        return True
    if ".." in PurePosixPath(posix).parts:
        return True
    resolved = (dest / posix).resolve()
    return not resolved.is_relative_to(dest.resolve())


def _extract_zip(zip_path: Path, dest: Path) -> None:
    """Extract ``zip_path`` into ``dest``; refuse the whole archive if any entry escapes it."""
    import zipfile

    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [i for i in archive.infolist() if not i.filename.startswith(_JUNK_PREFIXES)]
            for info in members:
                if _unsafe_entry(info.filename, dest):
                    raise DataError(
                        f"zip entry {info.filename!r} would be written outside the target "
                        "folder; refusing to extract this archive",
                        zip_path,
                    )
            for info in progress(members, f"extracting {zip_path.name}", total=len(members)):
                archive.extract(info, dest)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a readable zip archive ({exc})", zip_path) from None


def _tree_root(root: Path) -> Path:
    """``root`` itself when it holds the layout, else ``root/FracAtlas`` when that exists."""
    root = Path(root)
    if (root / "images").is_dir() or (root / "dataset.csv").is_file():
        return root
    if (root / TREE_NAME).is_dir():
        return root / TREE_NAME
    return root


def _count_images(folder: Path) -> int:
    return len(list_images(folder)[0])


def _count_csv_rows(path: Path, *, column: str = "image_id") -> int:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise DataError(f"no {column} column in the header", path)
        return sum(1 for row in reader if any((v or "").strip() for v in row.values()))


def _coco_counts(path: Path) -> tuple[int, int]:
    """Images and usable boxes in a COCO file, read by the converter's own parser."""
    content = parse_coco(path)
    return len(content.sizes), sum(len(boxes) for boxes in content.boxes.values())


def verify_fracatlas(root: Path) -> VerifyReport:
    """Check a FracAtlas tree (``root`` or ``root/FracAtlas``) against the published layout.

    Raises :class:`DataError` (one line naming every missing piece) when a folder or file of
    the layout is absent; counts that differ from :data:`EXPECTED_COUNTS` become warnings.
    """
    root = _tree_root(Path(root))
    if not root.is_dir():
        raise DataError("no such folder; expected a FracAtlas tree", root)
    missing = [
        rel.as_posix() + ("/" if kind == "dir" else "")
        for rel, kind in _REQUIRED
        if not ((root / rel).is_dir() if kind == "dir" else (root / rel).is_file())
    ]
    if missing:
        raise DataError(
            f"not a complete FracAtlas tree, missing: {', '.join(missing)} "
            f"(expected the layout of the figshare zip, {FIGSHARE_PAGE})",
            root,
        )
    coco_images, coco_annotations = _coco_counts(root / COCO_FILE)
    counts = {
        "dataset_csv_rows": _count_csv_rows(root / "dataset.csv"),
        "fractured_images": _count_images(root / "images" / "Fractured"),
        "non_fractured_images": _count_images(root / "images" / "Non_fractured"),
        "coco_images": coco_images,
        "coco_annotations": coco_annotations,
    }
    for split in SPLIT_FILES:
        counts[f"split_{split}"] = _count_csv_rows(root / SPLIT_DIR / f"{split}.csv")
    warnings = [
        f"{_COUNT_LABELS[key]}: found {counts[key]}, the published dataset has {expected}"
        + (" (a partial copy?)" if counts[key] < expected else "")
        for key, expected in EXPECTED_COUNTS.items()
        if counts[key] != expected
    ]
    return VerifyReport(root=root, counts=counts, warnings=warnings)


def _log_report(report: VerifyReport) -> None:
    if report.warnings:
        logger.info(
            "FracAtlas layout complete at %s; %d count(s) differ from the published dataset: %s",
            report.root,
            len(report.warnings),
            "; ".join(report.warnings),
        )
    else:
        logger.info("FracAtlas verified at %s: layout and counts match", report.root)


def _install(output: Path, overwrite: bool, fill: Callable[[Path], None]) -> VerifyReport:
    """Build ``output`` atomically with ``fill(tmp)``, verify it there; the report names the
    final root."""
    output = Path(output)
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        fill(tmp)
        report = verify_fracatlas(tmp)
        relative = report.root.relative_to(tmp)
    report = replace(report, root=output / relative)
    _log_report(report)
    return report


def _check_output(output: Path, overwrite: bool) -> None:
    if Path(output).exists() and not overwrite:
        raise OutputExistsError("already exists; pass --overwrite to replace it", output)


def fetch_fracatlas(
    output: Path,
    *,
    article_id: int = FIGSHARE_ARTICLE_ID,
    api_url: str = FIGSHARE_API_URL,
    timeout: float = 30,
    overwrite: bool = False,
) -> Path:
    """Download FracAtlas from figshare into ``output``; return the folder holding the tree.

    The returned folder is the one with ``images/``, ``Annotations/``, ``dataset.csv`` and
    ``Utilities/`` (``output/FracAtlas`` for the published zip); pass it to ``fracdet convert``.
    Each file's size and MD5 are checked against the figshare API, zips are extracted (entries
    escaping the target are refused) into a temporary folder renamed into place on success.
    Raises :class:`DataError` when offline, on a checksum mismatch or an incomplete layout, and
    :class:`OutputExistsError` when ``output`` exists and not ``overwrite``.
    """
    return _fetch_and_verify(
        output, article_id=article_id, api_url=api_url, timeout=timeout, overwrite=overwrite
    ).root


def _fetch_and_verify(
    output: Path, *, article_id: int, api_url: str, timeout: float, overwrite: bool
) -> VerifyReport:
    import zipfile

    _check_output(output, overwrite)
    files = _read_article(api_url, article_id, timeout)

    def fill(tmp: Path) -> None:
        downloads = tmp / ".download"
        downloads.mkdir()
        for entry in files:
            path = _download(entry, downloads, timeout)
            if zipfile.is_zipfile(path):
                _extract_zip(path, tmp)
                path.unlink()
            else:
                path.replace(tmp / path.name)
        shutil.rmtree(downloads)

    return _install(output, overwrite, fill)


def extract_fracatlas_zip(zip_path: Path, output: Path, *, overwrite: bool = False) -> Path:
    """Extract a FracAtlas zip downloaded by hand into ``output`` and verify it (offline).

    Returns the folder holding the tree, as :func:`fetch_fracatlas` does.
    """
    return _extract_and_verify(zip_path, output, overwrite).root


def _extract_and_verify(zip_path: Path, output: Path, overwrite: bool) -> VerifyReport:
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise DataError(f"no such file; download it from {FIGSHARE_PAGE}", zip_path)
    _check_output(output, overwrite)
    return _install(output, overwrite, lambda tmp: _extract_zip(zip_path, tmp))


def get_fracatlas(
    output: Path,
    *,
    from_zip: Path | None = None,
    article_id: int = FIGSHARE_ARTICLE_ID,
    api_url: str = FIGSHARE_API_URL,
    timeout: float = 30,
    overwrite: bool = False,
) -> VerifyReport:
    """Put a verified FracAtlas tree in ``output``: extract ``from_zip`` when given, else download.

    Returns the verification report of the installed tree (its ``root``, ``counts``,
    ``warnings`` for counts that differ from the published ones, and ``line()`` for people).
    Raises as :func:`fetch_fracatlas` and :func:`extract_fracatlas_zip` do.
    """
    if from_zip is not None:
        return _extract_and_verify(from_zip, output, overwrite)
    return _fetch_and_verify(
        output, article_id=article_id, api_url=api_url, timeout=timeout, overwrite=overwrite
    )
