"""The one annotation model and its conversions at the file boundary.

Inside fracdet a box is always absolute pixel ``xyxy`` floats in the frame of the image as
displayed (after EXIF orientation). YOLO (normalized ``cxcywh``), COCO (``xywh``) and
PASCAL VOC (integer corners) exist only in the functions below that read or write them.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fracdet.errors import DataError

__all__ = [
    "Box",
    "ImageRecord",
    "AnnotatedDataset",
    "Problem",
    "BODY_PARTS",
    "SPLITS",
    "clip_box",
    "flat_name",
    "box_to_yolo",
    "box_from_yolo",
    "box_to_coco",
    "box_from_coco",
    "format_yolo_label",
    "parse_yolo_label",
    "format_voc_xml",
    "parse_voc_xml",
]

#: The split names used inside fracdet (FracAtlas' "valid" becomes "val").
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: FracAtlas body-part flags, in the order of its dataset.csv.
BODY_PARTS: tuple[str, ...] = ("hand", "leg", "hip", "shoulder", "mixed")

# Boxes may overshoot the image by rounding (YOLO's 4-decimal labels, VOC's integers); only
# larger overshoots are worth telling the user about.
CLIP_TOLERANCE_PX = 0.5


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in absolute pixels, ``x1 <= x2`` and ``y1 <= y2``."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: int = 0

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass(frozen=True, slots=True)
class Problem:
    """Something found wrong in the input, and what was done about it."""

    file: str
    kind: str
    detail: str
    action: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "kind": self.kind, "detail": self.detail, "action": self.action}


@dataclass(frozen=True)
class ImageRecord:
    """One image and everything known about it, whatever format it came from.

    ``label`` is the image-level class (1 fractured, 0 not). ``group`` keeps images of one
    patient or series together when splitting. ``split`` is the official split, if any.
    """

    image_id: str
    path: Path
    width: int
    height: int
    label: int
    boxes: tuple[Box, ...] = ()
    group: str = ""
    split: str | None = None
    body_part: str = "unknown"
    attributes: Mapping[str, str] = field(default_factory=dict)

    def with_split(self, split: str) -> ImageRecord:
        return replace(self, split=split)


@dataclass
class AnnotatedDataset:
    """What every reader returns and every writer takes: records, class names, problems.

    ``class_names`` are the detector's box classes (FracAtlas: ``("fractured",)``).
    """

    records: list[ImageRecord]
    class_names: tuple[str, ...]
    source_format: str
    root: Path
    problems: list[Problem] = field(default_factory=list)

    @property
    def has_official_split(self) -> bool:
        return any(r.split for r in self.records)


def flat_name(image_id: str) -> str:
    """A file name for ``image_id`` in a flat output folder (``a/b.jpg`` -> ``a__b.jpg``)."""
    return image_id.replace("\\", "/").replace("/", "__")


def clip_box(box: Box, width: int, height: int) -> tuple[Box | None, str | None]:
    """Clip ``box`` to the image; return ``(box or None, problem kind or None)``.

    Returns ``None`` for a box that is not finite, inverted (``x1 > x2`` or ``y1 > y2``: a
    label error to report, not to repair by swapping corners) or has no area left. The kind
    is ``"box_clipped"`` only when the box overshot by more than :data:`CLIP_TOLERANCE_PX`
    (rounding is not news).
    """
    x1, y1, x2, y2 = box.x1, box.y1, box.x2, box.y2
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None, "box_not_finite"
    if x1 > x2 or y1 > y2:
        return None, "box_inverted"
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
        return None, "box_zero_area"
    overshoot = max(cx1 - x1, cy1 - y1, x2 - cx2, y2 - cy2)
    clipped = Box(cx1, cy1, cx2, cy2, box.label)
    return clipped, ("box_clipped" if overshoot > CLIP_TOLERANCE_PX else None)


# --- YOLO -------------------------------------------------------------------------------


def box_to_yolo(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    """Absolute xyxy -> normalized ``(cx, cy, w, h)``."""
    return (
        (box.x1 + box.x2) / 2 / width,
        (box.y1 + box.y2) / 2 / height,
        (box.x2 - box.x1) / width,
        (box.y2 - box.y1) / height,
    )


def box_from_yolo(
    cx: float, cy: float, w: float, h: float, width: int, height: int, label: int = 0
) -> Box:
    """Normalized ``(cx, cy, w, h)`` -> absolute xyxy."""
    return Box(
        (cx - w / 2) * width,
        (cy - h / 2) * height,
        (cx + w / 2) * width,
        (cy + h / 2) * height,
        label,
    )


def format_yolo_label(boxes: Iterable[Box], width: int, height: int) -> str:
    """YOLO txt content: one ``cls cx cy w h`` line a box, 6 decimals (sub-pixel up to 10^5 px)."""
    lines = []
    for box in boxes:
        cx, cy, w, h = box_to_yolo(box, width, height)
        lines.append(f"{box.label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def parse_yolo_label(
    text: str, width: int, height: int, num_classes: int, file: str
) -> tuple[list[Box], list[Problem]]:
    """Parse YOLO txt (boxes, or Ultralytics segment polygons reduced to their box).

    Lines that cannot be used are dropped and reported; nothing raises. A box with a
    negative width or height comes back inverted, for :func:`clip_box` to report.
    """
    boxes: list[Box] = []
    problems: list[Problem] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"line {lineno}"
        try:
            cls_float = float(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError:
            problems.append(
                Problem(file, "label_unparsable", f"{where}: {line.strip()!r}", "line dropped")
            )
            continue
        if (
            not math.isfinite(cls_float)
            or cls_float != int(cls_float)
            or not 0 <= cls_float < num_classes
        ):
            problems.append(
                Problem(
                    file,
                    "class_id_out_of_range",
                    f"{where}: class {parts[0]} not in 0..{num_classes - 1}",
                    "box dropped",
                )
            )
            continue
        if len(values) == 4:
            box = box_from_yolo(*values, width, height, label=int(cls_float))
        elif len(values) >= 6 and len(values) % 2 == 0:
            xs, ys = values[0::2], values[1::2]
            box = Box(
                min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height, int(cls_float)
            )
        else:
            problems.append(
                Problem(
                    file,
                    "label_unparsable",
                    f"{where}: expected 5 values, got {len(parts)}",
                    "line dropped",
                )
            )
            continue
        boxes.append(box)
    return boxes, problems


# --- COCO -------------------------------------------------------------------------------


def box_to_coco(box: Box) -> list[float]:
    """Absolute xyxy -> COCO ``[x, y, w, h]``."""
    return [box.x1, box.y1, box.x2 - box.x1, box.y2 - box.y1]


def box_from_coco(bbox: Sequence[float], label: int = 0) -> Box:
    """COCO ``[x, y, w, h]`` -> absolute xyxy."""
    x, y, w, h = (float(v) for v in bbox)
    return Box(x, y, x + w, y + h, label)


# --- PASCAL VOC -------------------------------------------------------------------------


def format_voc_xml(
    filename: str,
    width: int,
    height: int,
    boxes: Iterable[Box],
    class_names: Sequence[str],
    depth: int = 3,
) -> str:
    """PASCAL VOC XML. VOC corners are integers: rounded outward so the box still covers."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "PASCAL VOC"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[box.label]
        for tag, value in (("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
            ET.SubElement(obj, tag).text = value
        bnd = ET.SubElement(obj, "bndbox")
        corners = (math.floor(box.x1), math.floor(box.y1), math.ceil(box.x2), math.ceil(box.y2))
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=True):
            ET.SubElement(bnd, tag).text = str(int(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def parse_voc_xml(path: Path, class_names: Sequence[str]) -> tuple[list[Box], list[Problem]]:
    """Boxes of one VOC file; objects of unknown classes are dropped and reported.

    A file that cannot be read as XML is a :class:`DataError`. Corners are returned as
    written: ``xmin > xmax`` stays inverted, for :func:`clip_box` to report.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"not valid PASCAL VOC XML ({exc})", path) from exc
    except (
        OSError,
        ValueError,
        LookupError,
        RecursionError,
    ) as exc:  # unreadable, bad encoding declaration, too deep
        raise DataError(
            f"cannot read PASCAL VOC XML ({' '.join(str(exc).split()) or type(exc).__name__})", path
        ) from exc
    boxes: list[Box] = []
    problems: list[Problem] = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        if name not in class_names:
            problems.append(
                Problem(
                    str(path), "class_id_out_of_range", f"unknown class {name!r}", "box dropped"
                )
            )
            continue
        try:
            coords = [float(bnd.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr, arg-type]
        except (AttributeError, TypeError, ValueError):
            problems.append(
                Problem(
                    str(path),
                    "label_unparsable",
                    "object without a numeric <bndbox>",
                    "box dropped",
                )
            )
            continue
        boxes.append(Box(*coords, label=list(class_names).index(name)))
    return boxes, problems
