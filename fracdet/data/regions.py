"""Named regions of images (a shortcut marker, a ruler, a hardware plate), read from one CSV.

The causal box test (:mod:`fracdet.audit.check_causal`) removes the fracture boxes and
matched controls; a user who suspects another cue names its region per image in a CSV and
the test removes it too, reported per name. Columns: ``image_id`` (the manifest's key),
``region`` (a name), ``x1, y1, x2, y2`` in the original image's pixels (the annotation
model's convention). An image may have several regions, and several boxes of one name
(removed together).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from fracdet.data.formats import Box
from fracdet.errors import DataError
from fracdet.fsutil import atomic_write_text

__all__ = ["REGION_COLUMNS", "read_regions", "write_regions", "check_regions"]

REGION_COLUMNS = ("image_id", "region", "x1", "y1", "x2", "y2")

#: ``{image_id: {region name: [boxes]}}``
Regions = dict[str, dict[str, list[Box]]]


def read_regions(path: Path) -> Regions:
    """The regions of a CSV; a missing column, a bad number or an empty box is one error."""
    path = Path(path)
    if not path.is_file():
        raise DataError("named regions CSV not found", path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REGION_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise DataError(
                f"named regions CSV lacks column(s) {', '.join(missing)}; "
                f"it needs {', '.join(REGION_COLUMNS)}",
                path,
            )
        regions: Regions = {}
        for line, row in enumerate(reader, start=2):
            key, name = (row["image_id"] or "").strip(), (row["region"] or "").strip()
            try:
                x1, y1, x2, y2 = (float(row[c]) for c in REGION_COLUMNS[2:])
            except (TypeError, ValueError):
                raise DataError(f"line {line}: x1, y1, x2, y2 must be numbers", path) from None
            if not key or not name:
                raise DataError(f"line {line}: image_id and region must not be empty", path)
            if not (x2 > x1 and y2 > y1):
                raise DataError(f"line {line}: box ({x1}, {y1}, {x2}, {y2}) has no area", path)
            regions.setdefault(key, {}).setdefault(name, []).append(Box(x1, y1, x2, y2))
    return regions


def check_regions(regions: Regions, sizes: Mapping[str, tuple[int, int]], path: Path) -> None:
    """Every image known (``sizes``: ``{image_id: (width, height)}``, the whole dataset) and
    every box inside its image; else one error naming the first culprit and the file."""
    for key, named in regions.items():
        if key not in sizes:
            raise DataError(f"image {key!r} of the named regions is not in the dataset", path)
        width, height = sizes[key]
        for name, boxes in named.items():
            for b in boxes:
                if width and (b.x1 < 0 or b.y1 < 0 or b.x2 > width or b.y2 > height):
                    raise DataError(
                        f"region {name!r} of {key!r} ({b.x1:g}, {b.y1:g}, {b.x2:g}, {b.y2:g}) "
                        f"lies outside its {width}x{height} image",
                        path,
                    )


def write_regions(path: Path, rows: Iterable[tuple[str, str, Box]]) -> Path:
    """Write ``(image_id, region, box)`` rows atomically; returns ``path``."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(REGION_COLUMNS)
    for key, name, b in rows:
        writer.writerow([key, name, *(f"{v:g}" for v in (b.x1, b.y1, b.x2, b.y2))])
    return atomic_write_text(Path(path), text.getvalue())
