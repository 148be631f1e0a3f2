"""FracAtlas' tables: ``dataset.csv`` (body part, view and hardware flags) and the official
split files, read with their quirks; what cannot be read is reported, never guessed."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from fracdet.data.formats import BODY_PARTS, Problem
from fracdet.errors import DataError

__all__ = [
    "CSV_COLUMNS",
    "SPLIT_DIR",
    "SPLIT_FILES",
    "read_csv_rows",
    "body_part",
    "series_groups",
    "read_official_split",
]

CSV_COLUMNS: tuple[str, ...] = (
    "image_id",
    "hand",
    "leg",
    "hip",
    "shoulder",
    "mixed",
    "hardware",
    "multiscan",
    "fractured",
    "fracture_count",
    "frontal",
    "lateral",
    "oblique",
)
SPLIT_DIR = Path("Utilities", "Fracture Split")
SPLIT_FILES: dict[str, str] = {"train": "train", "valid": "val", "test": "test"}


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    """Header and rows of a CSV file; one that cannot be read as CSV text is a
    :class:`DataError`.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except UnicodeDecodeError as exc:
        raise DataError("not UTF-8 CSV text (binary data?)", path) from exc
    except (OSError, csv.Error) as exc:
        raise DataError(f"cannot read as CSV ({' '.join(str(exc).split())})", path) from exc


def read_csv_rows(path: Path, problems: list[Problem]) -> list[dict[str, str]]:
    """dataset.csv rows with their values checked: unparsable flags become unknown (empty), and
    are reported.
    """
    if not path.is_file():
        problems.append(
            Problem(str(path), "missing_file", "no dataset.csv", "body part and view flags unknown")
        )
        return []
    fields, raw_rows = _read_csv(path)
    if not fields:
        problems.append(
            Problem(
                str(path),
                "missing_file",
                "dataset.csv is empty",
                "body part and view flags unknown",
            )
        )
        return []
    if "image_id" not in fields:
        raise DataError("dataset.csv has no image_id column", path)
    missing = [column for column in CSV_COLUMNS if column not in fields]
    if missing:
        consequence = (
            "body part unknown for every image (no stratification by body part)"
            if set(BODY_PARTS) <= set(missing)
            else "these flags count as unknown"
        )
        problems.append(
            Problem(
                str(path), "csv_missing_columns", f"no column(s) {', '.join(missing)}", consequence
            )
        )
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(raw_rows, start=2):
        row = {
            k: (v.strip() if isinstance(v, str) else "")
            for k, v in raw.items()
            if isinstance(k, str)
        }
        image_id = row.get("image_id", "")
        if not image_id:
            problems.append(
                Problem(str(path), "label_unparsable", f"line {lineno}: no image_id", "row ignored")
            )
            continue
        if image_id in seen:
            problems.append(
                Problem(
                    str(path),
                    "duplicate_id",
                    f"line {lineno}: {image_id} is listed again",
                    "later row ignored",
                )
            )
            continue
        seen.add(image_id)
        bad = {
            column: row[column]
            for column in CSV_COLUMNS[1:]
            if column in row and not _valid_csv_value(column, row[column])
        }
        if bad:
            values = ", ".join(f"{k}={v!r:.40}" for k, v in bad.items())
            problems.append(
                Problem(
                    str(path),
                    "csv_value_unparsable",
                    f"line {lineno} ({image_id}): {values} (expected 0 or 1; fracture_count a "
                    "count)",
                    "values treated as unknown",
                )
            )
            row.update(dict.fromkeys(bad, ""))
        rows.append(row)
    return rows


def _valid_csv_value(column: str, value: str) -> bool:
    return (
        value.isdigit() and value.isascii() if column == "fracture_count" else value in ("0", "1")
    )


def body_part(row: dict[str, str]) -> str:
    """The one flagged body part, ``mixed`` for several, ``unknown`` for none or an unknown
    (unparsable) flag.
    """
    if any(row.get(part) == "" for part in BODY_PARTS):
        return "unknown"
    flagged = [part for part in BODY_PARTS if row.get(part) == "1"]
    return flagged[0] if len(flagged) == 1 else "mixed" if flagged else "unknown"


def series_groups(rows: Sequence[dict[str, str]]) -> dict[str, str]:
    """Group id per image: consecutive multi-scan rows of one body part form one series.

    FracAtlas has no patient id. Images are numbered in acquisition order, so a run of
    multi-scan images of the same body part most likely comes from one patient; keeping the
    run in one split can only make the split stricter.
    """
    groups: dict[str, str] = {}
    previous_key, current = None, ""
    for row in rows:
        image_id = row["image_id"]
        key = body_part(row) if row.get("multiscan") == "1" else None
        if key is None or key != previous_key:
            current = f"series-{Path(image_id).stem}" if key else Path(image_id).stem
        groups[image_id] = current
        previous_key = key
    return groups


def read_official_split(root: Path, problems: list[Problem]) -> dict[str, str]:
    split_of: dict[str, str] = {}
    for file_stem, split in SPLIT_FILES.items():
        path = root / SPLIT_DIR / f"{file_stem}.csv"
        if not path.is_file():
            continue
        fields, rows = _read_csv(path)
        if rows and "image_id" not in fields:
            raise DataError("split file has no image_id column", path)
        for row in rows:
            image_id = row.get("image_id")
            image_id = image_id.strip() if isinstance(image_id, str) else ""
            if image_id in split_of and split_of[image_id] != split:
                problems.append(
                    Problem(
                        str(path),
                        "duplicate_id",
                        f"{image_id} is in the {split_of[image_id]} and {split} splits",
                        f"kept in {split_of[image_id]}",
                    )
                )
            elif image_id:
                split_of[image_id] = split
    return split_of
