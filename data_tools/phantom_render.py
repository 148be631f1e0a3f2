"""Deterministic renderer of one synthetic musculoskeletal radiograph with known fracture boxes.

Why this exists: detector/classifier pipelines and attribution audits need images whose ground
truth is *known exactly* (where the crack is, whether a spurious shortcut marker is present),
cheaply and reproducibly, without shipping patient data. The renderer draws a projection-like
X-ray of simple bone primitives (hollow long bones, shells, arcs) inside a soft-tissue envelope,
cuts thin jagged cracks into the bone and reports tight boxes around the pixels the crack darkened.

Random streams are split on purpose:

* ``anatomy_rng`` fixes the patient: bones, fracture sites (in bone coordinates), hardware.
  Re-using its seed with a different ``view_rng`` seed gives a second view of the same patient.
* ``view_rng`` fixes the acquisition: pose, exposure, gamma, blur, noise and marker placement.

Each stream is split into independent child generators up front, so toggling ``n_fractures``,
``hardware`` or a marker never changes what the other draws produce: the same seeds rendered
with ``n_fractures=0`` and ``n_fractures=1`` differ only by the crack.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "BODY_PARTS",
    "FRACTURE_TYPES",
    "RenderedPhantom",
    "render_radiograph",
]

logger = logging.getLogger(__name__)

BODY_PARTS = ("hand", "leg", "hip", "shoulder", "mixed")
FRACTURE_TYPES = ("transverse", "oblique", "comminuted")

Box = tuple[float, float, float, float]

# Fracture sites and hardware are restricted to this central square of anatomy space; the view
# transform is bounded so that the square always stays inside the image (see _draw_view).
_ELIGIBLE_HALF = 0.55
_MAX_ROT_DEG = 22.0
_SCALE_RANGE = (0.85, 1.1)
_MAX_SHIFT = 0.06
_TEX_HALF = 1.6  # the trabecular texture covers anatomy [-1.6, 1.6]^2
_TEX_SIZE = 384
_JAG_POINTS = 9  # points per crack polyline (fixed so rng draw counts never vary)


@dataclass(frozen=True)
class RenderedPhantom:
    """One rendered radiograph plus the exact geometry of everything drawn on it.

    All boxes are absolute pixel ``(x1, y1, x2, y2)`` with ``x2``/``y2`` exclusive, clipped to
    the image, so they can be written straight into COCO/YOLO converters.
    """

    image: np.ndarray
    fracture_boxes: list[Box]
    fracture_types: list[str]
    hardware_boxes: list[Box]
    marker_boxes: list[Box]
    shortcut_box: Box | None


# --------------------------------------------------------------------------------------------
# Anatomy primitives (anatomy space: the image's central square spans [-1, 1]^2, y points down)
# --------------------------------------------------------------------------------------------


@dataclass
class _Capsule:
    """Hollow long bone along p0->p1 with flaring ends; the only primitive that can fracture."""

    p0: tuple[float, float]
    p1: tuple[float, float]
    radius: float
    cortex: float = 0.35  # cortical thickness as a fraction of the shaft radius
    flare0: float = 0.4  # relative radius gain at p0 (metaphysis/epiphysis)
    flare1: float = 0.4
    flare_len: float = 0.22  # fraction of the length over which the flare decays
    cap: float = 1.6  # >1 flattens the rounded end (articular surface)
    density: float = 1.0
    fracturable: bool = True


@dataclass
class _Ellipsoid:
    """Shell ellipsoid: round heads, carpals, condyles, flat plates (scapula, ilium)."""

    center: tuple[float, float]
    a: float
    b: float
    angle: float = 0.0  # radians
    depth: float | None = None  # projected thickness scale; defaults to min(a, b)
    shell: float = 0.3
    density: float = 1.0
    mu_m: float = 0.4  # relative density of the core (low: hollow ring such as the obturator)


@dataclass
class _Arc:
    """Tubular arc (acetabular rim, obturator ring, ribs)."""

    center: tuple[float, float]
    radius: float
    half_width: float
    ang0: float  # radians, image convention (y down)
    ang1: float
    shell: float = 0.45
    density: float = 1.0


_Prim = _Capsule | _Ellipsoid | _Arc


@dataclass
class _Bone:
    """A bone: primitives merged with ``max`` so overlapping parts do not double in density."""

    parts: list[_Prim]
    fractures: list[_Fracture] = field(default_factory=list)


@dataclass
class _Tissue:
    """Soft-tissue primitive: a capsule (p0 != p1) or a rotated ellipse, thickness ``level``."""

    p0: tuple[float, float]
    p1: tuple[float, float]
    radius: float
    level: float = 1.0
    b: float | None = None  # ellipse second semi-axis (p0 == p1 means ellipse)
    angle: float = 0.0


@dataclass
class _Fracture:
    """A crack in bone coordinates of a capsule: position t0 along the axis, shape, offset."""

    kind: str
    t0: float
    alpha: float  # crack angle from the perpendicular (radians)
    jitter: np.ndarray  # (3, _JAG_POINTS, 2) standard normals for jaggedness
    jag: float
    depth: float
    width_frac: float
    displacement: float  # across-axis shift of the distal fragment (anatomy units)
    comminuted: np.ndarray  # (5,) uniforms describing the comminuted star
    pick: float  # uniform in [0, 1) choosing the bone, resolved by _assign_fractures
    part_index: int = -1


@dataclass
class _Anatomy:
    bones: list[_Bone]
    tissue: list[_Tissue]
    texture: np.ndarray
    tissue_texture: np.ndarray


def _scale_prims(prims: list, s: float, off: tuple[float, float]) -> None:
    """Similarity-transform primitives in place (used to compose the ``mixed`` layout)."""

    def tp(p: tuple[float, float]) -> tuple[float, float]:
        return (p[0] * s + off[0], p[1] * s + off[1])

    for p in prims:
        if isinstance(p, _Capsule):
            p.p0, p.p1, p.radius = tp(p.p0), tp(p.p1), p.radius * s
        elif isinstance(p, _Ellipsoid):
            p.center, p.a, p.b = tp(p.center), p.a * s, p.b * s
            if p.depth is not None:
                p.depth *= s
        elif isinstance(p, _Arc):
            p.center, p.radius, p.half_width = tp(p.center), p.radius * s, p.half_width * s
        elif isinstance(p, _Tissue):
            p.p0, p.p1, p.radius = tp(p.p0), tp(p.p1), p.radius * s
            if p.b is not None:
                p.b *= s


def _u(r: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform draw as a Python float, so float32 arrays are never promoted to float64."""
    return float(r.uniform(lo, hi))


def _build_hand(r: np.random.Generator) -> tuple[list[_Bone], list[_Tissue]]:
    """3-5 metacarpals fanning upwards with phalanges, a carpal cluster and the distal forearm."""
    n = int(r.integers(3, 6))
    spacing = _u(r, 0.15, 0.19)
    base_y = _u(r, 0.22, 0.36)
    mc_len = _u(r, 0.38, 0.46)
    fan = _u(r, 0.04, 0.09)
    bones: list[_Bone] = []
    tissue: list[_Tissue] = []
    tips = []
    for i in range(n):
        off = i - (n - 1) / 2
        ang = off * fan + _u(r, -0.02, 0.02)
        d = (math.sin(ang), -math.cos(ang))
        rad = _u(r, 0.021, 0.028)
        x0 = off * spacing * 0.7 + _u(r, -0.01, 0.01)
        y0 = base_y + 0.035 * abs(off) ** 1.5
        length = mc_len * (1 - 0.07 * abs(off))
        p0 = (x0, y0)
        p1 = (x0 + d[0] * length, y0 + d[1] * length)
        bones.append(_Bone([_Capsule(p0, p1, rad, 0.4, 0.45, 0.55, 0.2, 1.3, _u(r, 0.95, 1.1))]))
        start = p1
        phalanges = ((0.62, 0.85, True), (0.36, 0.72, True), (0.24, 0.62, False))
        for frac_len, frac_rad, fract in phalanges:
            gap = rad * 1.9
            q0 = (start[0] + d[0] * gap, start[1] + d[1] * gap)
            plen = mc_len * frac_len
            q1 = (q0[0] + d[0] * plen, q0[1] + d[1] * plen)
            bones.append(
                _Bone([_Capsule(q0, q1, rad * frac_rad, 0.45, 0.55, 0.35, 0.25, 1.4, 1.0, fract)])
            )
            start = q1
        tips.append(start)
        tissue.append(_Tissue(p1, start, rad * 2.9, 0.55))
    # carpal cluster: two packed rows of irregular ovals
    cy = base_y + _u(r, 0.1, 0.13)
    width = spacing * 0.7 * (n - 1) + 0.16
    for k in range(8):
        row, col = divmod(k, 4)
        cx = (col - 1.5) / 4.4 * width * (1.0 - 0.12 * row) + _u(r, -0.018, 0.018)
        yy = cy + row * 0.085 + _u(r, -0.018, 0.018)
        a = width / 10.0 * _u(r, 0.8, 1.3)
        bones.append(
            _Bone(
                [
                    _Ellipsoid(
                        (cx, yy), a, a * _u(r, 0.65, 1.0), _u(r, -0.8, 0.8), a, 0.22, 0.85, 0.5
                    )
                ]
            )
        )
    # distal radius and ulna
    wy = cy + 0.27
    rx = _u(r, 0.05, 0.1)
    bones.append(_Bone([_Capsule((rx, 1.7), (rx - 0.02, wy), 0.062, 0.3, 0.2, 0.75, 0.2, 2.0)]))
    bones.append(_Bone([_Capsule((rx - 0.3, 1.7), (rx - 0.26, wy + 0.02), 0.038, 0.3, 0.2, 0.4)]))
    palm_w = width / 2 + 0.12
    tissue.append(
        _Tissue(
            (0.0, base_y - mc_len * 0.45),
            (0.0, base_y - mc_len * 0.45),
            palm_w,
            0.8,
            b=mc_len * 0.75,
        )
    )
    tissue.append(_Tissue((rx - 0.12, cy), (rx - 0.12, 2.0), palm_w * 0.85, 0.9))
    return bones, tissue


def _build_leg(r: np.random.Generator) -> tuple[list[_Bone], list[_Tissue]]:
    """Tibia + fibula with either the ankle (talus) or the knee (femoral condyles) in frame."""
    xt = _u(r, -0.14, 0.02)
    tr = _u(r, 0.06, 0.075)
    tilt = _u(r, -0.06, 0.06)
    fib_r = tr * _u(r, 0.38, 0.48)
    bones: list[_Bone] = []
    if r.random() < 0.5:  # ankle
        y1 = _u(r, 0.55, 0.72)
        bones.append(_Bone([_Capsule((xt, -1.6), (xt + tilt, y1), tr, 0.38, 0.3, 0.6, 0.18, 2.2)]))
        bones.append(
            _Bone(
                [
                    _Capsule(
                        (xt + 0.19, -1.6),
                        (xt + tilt + 0.15, y1 + 0.07),
                        fib_r,
                        0.4,
                        0.3,
                        0.7,
                        0.12,
                        1.4,
                    )
                ]
            )
        )
        bones.append(
            _Bone([_Ellipsoid((xt + tilt + 0.02, y1 + 0.15), 0.15, 0.085, 0.0, 0.085, 0.25, 0.95)])
        )
        bones.append(
            _Bone([_Ellipsoid((xt + tilt + 0.03, y1 + 0.33), 0.2, 0.12, 0.2, 0.1, 0.25, 0.85)])
        )
    else:  # knee
        y0 = _u(r, -0.72, -0.58)
        bones.append(_Bone([_Capsule((xt, y0), (xt + tilt, 1.6), tr, 0.38, 0.85, 0.3, 0.2, 2.6)]))
        bones.append(
            _Bone(
                [
                    _Capsule(
                        (xt + 0.17, y0 + 0.12),
                        (xt + tilt + 0.14, 1.6),
                        fib_r,
                        0.4,
                        0.7,
                        0.3,
                        0.1,
                        1.3,
                    )
                ]
            )
        )
        bones.append(
            _Bone(
                [
                    _Capsule(
                        (xt - 0.02, -1.9),
                        (xt, y0 - 0.07),
                        tr * 1.1,
                        0.35,
                        0.3,
                        1.3,
                        0.22,
                        3.0,
                        1.0,
                        False,
                    )
                ]
            )
        )
        bones.append(_Bone([_Ellipsoid((xt - 0.01, y0 - 0.2), 0.085, 0.11, 0.0, 0.06, 0.25, 0.8)]))
    tissue = [_Tissue((xt + 0.05, -1.8), (xt + tilt + 0.05, 1.8), _u(r, 0.3, 0.38), 1.0)]
    return bones, tissue


def _build_hip(r: np.random.Generator) -> tuple[list[_Bone], list[_Tissue]]:
    """Femur with round head, neck and trochanters, plus acetabulum, ilium and obturator ring."""
    hx, hy = _u(r, -0.22, -0.08), _u(r, -0.42, -0.3)
    rh = _u(r, 0.12, 0.14)
    sr = _u(r, 0.075, 0.09)
    neck_ang = math.radians(_u(r, 32.0, 45.0))  # below horizontal, towards the trochanter
    nl = _u(r, 0.24, 0.3)
    neck_end = (hx + nl * math.cos(neck_ang), hy + nl * math.sin(neck_ang))
    top = (neck_end[0] + 0.03, neck_end[1] - 0.02)
    bot = (top[0] - _u(r, 0.04, 0.14), 1.7)
    head_c = (hx, hy)
    femur: list[_Prim] = [
        _Capsule(top, bot, sr, 0.42, 0.7, 0.0, 0.2, 1.5),
        _Ellipsoid((top[0] + 0.06, top[1] - 0.03), 0.09, 0.13, 0.25, 0.09, 0.2, 0.9, 0.55),
        _Ellipsoid((top[0] - 0.09, top[1] + 0.2), 0.04, 0.05, 0.5, 0.04, 0.3, 0.85),
    ]
    neck: list[_Prim] = [
        _Capsule(head_c, neck_end, rh * 0.62, 0.3, 0.15, 0.45, 0.35, 1.2, 1.0, True),
        _Ellipsoid(head_c, rh, rh, 0.0, rh, 0.2, 1.0, 0.55),
    ]
    roof = rh + 0.025
    pelvis: list[_Prim] = [
        _Arc(head_c, roof + 0.03, 0.03, math.radians(-185), math.radians(-20), 0.5, 1.0),
        _Ellipsoid((hx - 0.1, hy - rh - 0.36), 0.46, 0.6, 0.4, 0.06, 0.05, 0.9, 0.5),
        _Ellipsoid((hx - 0.24, hy + 0.27), 0.2, 0.14, 0.45, 0.05, 0.45, 1.7, 0.0),
        _Capsule(
            (hx - 0.05, hy + 0.08), (hx - 1.3, hy + 0.2), 0.055, 0.4, 0.5, 0.2, 0.2, 1.2, 0.9, False
        ),
    ]
    bones = [_Bone(femur), _Bone(neck)] + [_Bone([p]) for p in pelvis]
    tissue = [
        _Tissue((top[0], hy), (bot[0] + 0.03, 1.9), _u(r, 0.4, 0.46), 1.0),
        _Tissue((hx - 0.45, hy - 0.25), (hx - 0.45, hy - 0.25), 0.95, 1.15, b=0.85, angle=-0.2),
    ]
    return bones, tissue


def _build_shoulder(r: np.random.Generator) -> tuple[list[_Bone], list[_Tissue]]:
    """Humerus with round head, clavicle (two segments), scapula plate, glenoid and ribs."""
    hx, hy = _u(r, 0.0, 0.12), _u(r, -0.3, -0.18)
    rh = _u(r, 0.12, 0.15)
    sr = _u(r, 0.055, 0.07)
    top = (hx + 0.05, hy + rh * 0.6)
    bot = (hx + _u(r, 0.06, 0.16), 1.7)
    bones = [
        _Bone(
            [
                _Capsule(top, bot, sr, 0.38, 0.75, 0.0, 0.22, 1.4),
                _Ellipsoid((hx, hy), rh, rh, 0.0, rh, 0.2, 1.0, 0.55),
                _Ellipsoid((hx + rh * 0.85, hy + 0.03), 0.055, 0.08, 0.2, 0.06, 0.25, 0.85),
            ]
        ),
    ]
    gy = hy + 0.02
    gx = hx - rh - 0.045
    cl_y = hy - rh - _u(r, 0.1, 0.16)
    mid = (hx - _u(r, 0.4, 0.5), cl_y + _u(r, 0.0, 0.05))
    for k in range(6):  # ribs behind the scapula: faint, gently sagging arcs
        c = (hx - 1.0, hy - 0.95 + 0.2 * k)
        bones.append(_Bone([_Arc(c, 0.95, 0.028, 0.55, 1.9, 0.4, 0.4)]))
    bones += [
        _Bone([_Ellipsoid((gx, gy), 0.04, 0.13, 0.0, 0.04, 0.3, 0.8)]),
        _Bone([_Ellipsoid((gx - 0.27, gy + 0.3), 0.27, 0.45, 0.35, 0.05, 0.12, 1.5, 0.7)]),
        _Bone(
            [
                _Capsule(
                    (gx - 0.01, gy + 0.12),
                    (gx - 0.36, gy + 0.72),
                    0.03,
                    0.4,
                    0.3,
                    0.2,
                    0.2,
                    1.2,
                    0.9,
                    False,
                )
            ]
        ),
        _Bone(
            [
                _Capsule((hx + 0.03, cl_y + 0.02), mid, 0.034, 0.4, 0.5, 0.0, 0.2, 1.4, 1.0),
                _Capsule(mid, (hx - 1.15, cl_y - 0.12), 0.036, 0.4, 0.0, 0.4, 0.2, 1.4, 1.0, False),
            ]
        ),
        _Bone(
            [
                _Capsule(
                    (hx - 0.06, cl_y + 0.04),
                    (hx + rh + 0.04, hy - rh * 0.95),
                    0.035,
                    0.4,
                    0.3,
                    0.5,
                    0.2,
                    1.5,
                    0.9,
                    False,
                )
            ]
        ),
    ]
    tissue = [
        _Tissue((hx + 0.05, hy), (bot[0], 1.9), _u(r, 0.28, 0.34), 1.0),
        _Tissue((hx - 0.2, hy + 0.05), (hx - 0.2, hy + 0.05), 0.45, 1.0, b=0.45),
        _Tissue((hx - 1.1, hy + 0.6), (hx - 1.1, hy + 0.6), 0.9, 1.2, b=1.4),
    ]
    return bones, tissue


def _build_mixed(r: np.random.Generator) -> tuple[list[_Bone], list[_Tissue]]:
    """Wrist/forearm view: a down-scaled hand on top of full radius + ulna shafts."""
    bones, tissue = _build_hand(r)
    s = _u(r, 0.55, 0.65)
    off = (0.0, _u(r, -0.45, -0.35))
    prims = [p for b in bones for p in b.parts] + tissue
    _scale_prims(prims, s, off)
    # drop the scaled distal forearm stubs and replace them by full-length shafts
    bones = bones[:-2]
    wrist_y = (
        max(
            max(p.p0[1], p.p1[1]) if isinstance(p, _Capsule) else p.center[1]
            for b in bones
            for p in b.parts
        )
        + 0.06
    )
    rx = _u(r, 0.04, 0.1)
    bones.append(
        _Bone([_Capsule((rx + 0.03, 1.7), (rx, wrist_y), 0.05, 0.38, 0.2, 0.75, 0.15, 2.0)])
    )
    bones.append(
        _Bone(
            [
                _Capsule(
                    (rx - 0.25, 1.7), (rx - 0.2, wrist_y + 0.02), 0.036, 0.38, 0.3, 0.35, 0.15, 1.4
                )
            ]
        )
    )
    tissue = [t for t in tissue if t.p0[1] < wrist_y - 0.05]
    tissue.append(_Tissue((rx - 0.1, wrist_y - 0.1), (rx - 0.08, 2.0), _u(r, 0.24, 0.3), 1.0))
    return bones, tissue


_BUILDERS = {
    "hand": _build_hand,
    "leg": _build_leg,
    "hip": _build_hip,
    "shoulder": _build_shoulder,
    "mixed": _build_mixed,
}


def _texture(r: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Band-pass noise (trabecular mesh) and a very smooth field (soft-tissue inhomogeneity)."""
    n = r.standard_normal((_TEX_SIZE, _TEX_SIZE), dtype=np.float32)
    fine = cv2.GaussianBlur(n, (0, 0), 0.7)
    coarse = cv2.GaussianBlur(n, (0, 0), 2.0)
    band = fine - coarse
    band /= float(band.std()) + 1e-6
    tex = np.tanh(1.5 * band)  # soft-clipped: a lacy mesh instead of isolated dark holes
    tex -= float(tex.mean())
    tex /= float(tex.std()) + 1e-6
    low = r.standard_normal((24, 24), dtype=np.float32)
    low = cv2.GaussianBlur(low, (0, 0), 2.5)
    low /= float(low.std()) + 1e-6
    return tex.astype(np.float32), low.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


def _capsule_frame(c: _Capsule) -> tuple[float, float, float, float, float]:
    dx, dy = c.p1[0] - c.p0[0], c.p1[1] - c.p0[1]
    length = math.hypot(dx, dy)
    return dx / length, dy / length, -dy / length, dx / length, length


def _radius_at(c: _Capsule, t: np.ndarray | float, length: float) -> np.ndarray | float:
    tn = np.clip(np.asarray(t, dtype=np.float32) / length, 0.0, 1.0)
    w = max(c.flare_len, 1e-3)
    return c.radius * (
        1.0 + c.flare0 * np.exp(-((tn / w) ** 2)) + c.flare1 * np.exp(-(((1.0 - tn) / w) ** 2))
    )


def _eligible_interval(c: _Capsule) -> tuple[float, float] | None:
    """Part of the shaft (t in 15-85 % of its length) inside the central eligible square."""
    ax, ay, _, _, length = _capsule_frame(c)
    lo, hi = 0.15 * length, 0.85 * length
    for p, d in ((c.p0[0], ax), (c.p0[1], ay)):
        e = _ELIGIBLE_HALF
        if abs(d) < 1e-9:
            if abs(p) > e:
                return None
            continue
        t1, t2 = (-e - p) / d, (e - p) / d
        lo, hi = max(lo, min(t1, t2)), min(hi, max(t1, t2))
    if hi - lo < 0.04:
        return None
    return lo, hi


def _prim_bounds(p: _Prim) -> tuple[float, float, float, float]:
    if isinstance(p, _Capsule):
        m = p.radius * (1 + max(p.flare0, p.flare1)) * 1.3 + 0.02
        return (
            min(p.p0[0], p.p1[0]) - m,
            min(p.p0[1], p.p1[1]) - m,
            max(p.p0[0], p.p1[0]) + m,
            max(p.p0[1], p.p1[1]) + m,
        )
    if isinstance(p, _Ellipsoid):
        m = max(p.a, p.b) + 0.01
        return p.center[0] - m, p.center[1] - m, p.center[0] + m, p.center[1] + m
    ang = np.linspace(p.ang0, p.ang1, 24)  # bbox of the swept arc, not of the full circle
    xs, ys = p.center[0] + p.radius * np.cos(ang), p.center[1] + p.radius * np.sin(ang)
    m = p.half_width + 0.02
    return float(xs.min()) - m, float(ys.min()) - m, float(xs.max()) + m, float(ys.max()) + m


class _View:
    """Affine anatomy -> image mapping plus its inverse, with bbox helpers."""

    def __init__(self, m: np.ndarray, height: int, width: int) -> None:
        self.m = m.astype(np.float64)
        self.inv = cv2.invertAffineTransform(self.m)
        self.h, self.w = height, width
        self.px_per_unit = float(math.hypot(m[0, 0], m[1, 0]))

    def to_img(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        return pts @ self.m[:, :2].T + self.m[:, 2]

    def slice_for(
        self, bounds: tuple[float, float, float, float], pad: int = 2
    ) -> tuple[int, int, int, int] | None:
        x0, y0, x1, y1 = bounds
        corners = self.to_img(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]))
        xa = max(int(math.floor(corners[:, 0].min())) - pad, 0)
        ya = max(int(math.floor(corners[:, 1].min())) - pad, 0)
        xb = min(int(math.ceil(corners[:, 0].max())) + pad + 1, self.w)
        yb = min(int(math.ceil(corners[:, 1].max())) + pad + 1, self.h)
        if xa >= xb or ya >= yb:
            return None
        return xa, ya, xb, yb

    def grid(self, sl: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Anatomy coordinates (u, v) of the pixels in the slice, as float32 arrays."""
        xa, ya, xb, yb = sl
        xs = np.arange(xa, xb, dtype=np.float32)[None, :]
        ys = np.arange(ya, yb, dtype=np.float32)[:, None]
        i = self.inv.astype(np.float32)
        u = i[0, 0] * xs + i[0, 1] * ys + i[0, 2]
        v = i[1, 0] * xs + i[1, 1] * ys + i[1, 2]
        return u, v


def _shell(
    rho_n: np.ndarray,
    f: np.ndarray | float,
    mu_m: np.ndarray | float,
    tex: np.ndarray,
    tex_amp: float,
) -> np.ndarray:
    """Projected attenuation (in units of 2R) of a hollow shell with inner/outer ratio ``f``.

    The chord through the cortex is ``outer - inner`` and through the cancellous core ``inner``;
    that is what makes cortices bright lines and the medullary canal darker, as on film.
    """
    r2 = rho_n * rho_n
    outer = np.sqrt(np.maximum(1.0 - r2, 0.0))
    inner = np.sqrt(np.maximum(f * f - r2, 0.0))
    return (outer - inner) * (1.0 + 0.06 * tex) + mu_m * inner * (1.0 + tex_amp * tex)


def _size_gain(r: float) -> float:
    return 1.35 * (r / 0.05) ** 0.35


def _eval_capsule(
    c: _Capsule, u: np.ndarray, v: np.ndarray, tex: np.ndarray, fractures: list[_Fracture]
) -> np.ndarray:
    ax, ay, nx, ny, length = _capsule_frame(c)
    du, dv = u - np.float32(c.p0[0]), v - np.float32(c.p0[1])
    t = du * np.float32(ax) + dv * np.float32(ay)
    s = du * np.float32(nx) + dv * np.float32(ny)
    for fr in fractures:
        if fr.displacement != 0.0 and fr.kind != "comminuted":
            distal = t > (fr.t0 + s * np.float32(math.tan(fr.alpha)))
            s = np.where(distal, s - np.float32(fr.displacement), s)
    rad = _radius_at(c, t, length).astype(np.float32)
    over = np.maximum(np.maximum(-t, t - np.float32(length)), 0.0) * np.float32(c.cap)
    rho_n = np.sqrt(s * s + over * over) / rad
    cort = np.float32(c.cortex * c.radius)
    f = 1.0 - cort * (np.float32(c.radius) / rad) ** 2 / rad
    flare_w = 1.0 - np.float32(c.radius) / rad
    mu_m = 0.14 + 0.6 * flare_w  # epiphyses are cancellous: denser than the marrow canal
    att = _shell(rho_n, f, mu_m, tex, 0.1 + 0.25 * flare_w)
    return att * np.float32(c.density * _size_gain(c.radius))


def _eval_ellipsoid(e: _Ellipsoid, u: np.ndarray, v: np.ndarray, tex: np.ndarray) -> np.ndarray:
    ca, sa = math.cos(e.angle), math.sin(e.angle)
    du, dv = u - np.float32(e.center[0]), v - np.float32(e.center[1])
    x = (du * np.float32(ca) + dv * np.float32(sa)) / np.float32(e.a)
    y = (-du * np.float32(sa) + dv * np.float32(ca)) / np.float32(e.b)
    rho_n = np.sqrt(x * x + y * y)
    depth = e.depth if e.depth is not None else min(e.a, e.b)
    att = _shell(rho_n, 1.0 - e.shell, e.mu_m, tex, 0.15)
    flat = math.sqrt(depth / min(e.a, e.b))  # flat plates (ilium, scapula) project thinner
    return att * np.float32(e.density * _size_gain(depth) * flat)


def _eval_arc(a: _Arc, u: np.ndarray, v: np.ndarray, tex: np.ndarray) -> np.ndarray:
    du, dv = u - np.float32(a.center[0]), v - np.float32(a.center[1])
    rr = np.sqrt(du * du + dv * dv)
    mid = 0.5 * (a.ang0 + a.ang1)
    half = 0.5 * (a.ang1 - a.ang0)
    ang = np.arctan2(dv, du) - np.float32(mid)
    ang = (ang + np.float32(math.pi)) % np.float32(2 * math.pi) - np.float32(math.pi)
    over = np.maximum(np.abs(ang) - np.float32(half), 0.0) * np.float32(a.radius * 1.5)
    rad_off = rr - np.float32(a.radius)
    rho_n = np.sqrt(rad_off * rad_off + over * over) / np.float32(a.half_width)
    att = _shell(rho_n, 1.0 - a.shell, 0.35, tex, 0.12)
    return att * np.float32(a.density * _size_gain(a.half_width))


def _eval_prim(
    p: _Prim, u: np.ndarray, v: np.ndarray, tex: np.ndarray, fractures: list[_Fracture]
) -> np.ndarray:
    if isinstance(p, _Capsule):
        return _eval_capsule(p, u, v, tex, fractures)
    if isinstance(p, _Ellipsoid):
        return _eval_ellipsoid(p, u, v, tex)
    return _eval_arc(p, u, v, tex)


# --------------------------------------------------------------------------------------------
# Fractures
# --------------------------------------------------------------------------------------------


def _draw_fracture(r: np.random.Generator) -> _Fracture:
    """Draw one fracture's parameters with a FIXED number of draws (stream stays aligned)."""
    kind = FRACTURE_TYPES[int(r.integers(0, len(FRACTURE_TYPES)))]
    pick = float(r.random())  # bone choice, resolved against the anatomy later
    t_rel = float(r.random())
    sign = 1.0 if r.random() < 0.5 else -1.0
    a_trans = math.radians(float(np.clip(r.normal(0.0, 6.0), -14.0, 14.0)))
    a_obl = sign * math.radians(_u(r, 30.0, 60.0))
    alpha = a_trans if kind == "transverse" else a_obl
    jitter = r.standard_normal((3, _JAG_POINTS, 2))
    jag = _u(r, 0.1, 0.22)
    depth = _u(r, 0.8, 0.97)
    width_frac = _u(r, 0.0032, 0.0048)
    disp = _u(r, -1.0, 1.0)
    disp = disp if r.random() < 0.5 else 0.0
    comm = r.random(5)
    return _Fracture(kind, t_rel, alpha, jitter, jag, depth, width_frac, disp, comm, pick)


def _jagged(p0: np.ndarray, p1: np.ndarray, jit: np.ndarray, amp: float) -> np.ndarray:
    """Polyline from p0 to p1 (bone (t, s) coords) with perpendicular + tangential jitter."""
    k = jit.shape[0]
    w = np.linspace(0.0, 1.0, k)[:, None]
    pts = p0[None, :] * (1 - w) + p1[None, :] * w
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    taper = np.sin(np.pi * w[:, 0]) * 0.6 + 0.4
    pts += n[None, :] * (jit[:, 0] * amp * taper)[:, None]
    pts += (d / k)[None, :] * (jit[:, 1] * 0.25)[:, None]
    return pts


def _crack_geometry(fr: _Fracture, c: _Capsule) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Crack polylines (and a comminuted fragment polygon) in anatomy coordinates."""
    ax, ay, nx, ny, length = _capsule_frame(c)
    rad = float(_radius_at(c, fr.t0, length))
    ext = rad * 1.35
    amp = fr.jag * rad
    lines_ts: list[np.ndarray] = []
    frag_ts = None
    if fr.kind in ("transverse", "oblique"):
        tan = math.tan(fr.alpha)
        p0 = np.array([fr.t0 - ext * tan, -ext])
        p1 = np.array([fr.t0 + ext * tan, ext])
        lines_ts.append(_jagged(p0, p1, fr.jitter[0], amp))
    else:
        q = fr.comminuted
        side = 1.0 if q[4] < 0.5 else -1.0
        ctr = np.array([fr.t0, side * (q[0] - 0.5) * 0.5 * rad])
        da = (0.3 + 0.9 * q[1]) * rad
        e_main = np.array([fr.t0 + (q[2] - 0.5) * 1.2 * rad, side * ext])
        e_b = np.array([fr.t0 - da, -side * ext])
        e_c = np.array([fr.t0 + (0.3 + 0.9 * q[3]) * rad, -side * ext])
        lines_ts += [
            _jagged(ctr, e_main, fr.jitter[0], amp * 0.8),
            _jagged(ctr, e_b, fr.jitter[1], amp * 0.6),
            _jagged(ctr, e_c, fr.jitter[2], amp * 0.6),
        ]
        frag_ts = np.stack([ctr, e_b, e_c])

    def to_uv(ts: np.ndarray) -> np.ndarray:
        u = c.p0[0] + ts[:, 0] * ax + ts[:, 1] * nx
        v = c.p0[1] + ts[:, 0] * ay + ts[:, 1] * ny
        return np.stack([u, v], axis=1)

    return [to_uv(x) for x in lines_ts], (to_uv(frag_ts) if frag_ts is not None else None)


def _assign_fractures(bones: list[_Bone], fracs: list[_Fracture]) -> None:
    """Map each fracture's uniform ``pick`` to an eligible shaft, weighted by eligible length."""
    cands: list[tuple[int, int, float, float]] = []
    for bi, b in enumerate(bones):
        for pi, p in enumerate(b.parts):
            if isinstance(p, _Capsule) and p.fracturable:
                iv = _eligible_interval(p)
                if iv is not None:
                    cands.append((bi, pi, iv[0], iv[1]))
    if not cands:  # cannot happen for the built-in layouts; keep a defined fallback
        raise RuntimeError("anatomy has no fracture-eligible bone")
    lens = np.array([hi - lo for _, _, lo, hi in cands])
    cum = np.cumsum(lens) / lens.sum()
    for fr in fracs:
        k = int(min(np.searchsorted(cum, fr.pick, side="right"), len(cands) - 1))
        bi, pi, lo, hi = cands[k]
        fr.t0 = lo + fr.t0 * (hi - lo)
        fr.part_index = pi
        c = bones[bi].parts[pi]
        assert isinstance(c, _Capsule)
        rad = float(_radius_at(c, fr.t0, _capsule_frame(c)[4]))
        fr.displacement *= 0.35 * c.cortex * rad * 2.0
        bones[bi].fractures.append(fr)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _draw_view(r: np.random.Generator, height: int, width: int) -> _View:
    """Pose: rotation, scale, shift and mirroring, bounded to keep fracture sites in frame."""
    rot = math.radians(_u(r, -_MAX_ROT_DEG, _MAX_ROT_DEG))
    scale = _u(r, *_SCALE_RANGE)
    mirror = -1.0 if r.random() < 0.5 else 1.0
    side = min(height, width)
    half = 0.5 * side * scale
    sx, sy = (_u(r, -_MAX_SHIFT, _MAX_SHIFT) * side for _ in range(2))
    ca, sa = math.cos(rot), math.sin(rot)
    m = np.array(
        [
            [half * ca * mirror, -half * sa, 0.5 * width + sx],
            [half * sa * mirror, half * ca, 0.5 * height + sy],
        ]
    )
    return _View(m, height, width)


def _render_tissue(anat: _Anatomy, view: _View) -> np.ndarray:
    """Soft tissue thickness at quarter resolution, upsampled (it is smooth anyway)."""
    h, w = view.h, view.w
    f = 4
    hl, wl = max(h // f, 4), max(w // f, 4)
    xs = ((np.arange(wl, dtype=np.float32) + 0.5) * (w / wl) - 0.5)[None, :]
    ys = ((np.arange(hl, dtype=np.float32) + 0.5) * (h / hl) - 0.5)[:, None]
    i = view.inv.astype(np.float32)
    u = i[0, 0] * xs + i[0, 1] * ys + i[0, 2]
    v = i[1, 0] * xs + i[1, 1] * ys + i[1, 2]
    out = np.zeros((hl, wl), np.float32)
    for t in anat.tissue:
        du, dv = u - np.float32(t.p0[0]), v - np.float32(t.p0[1])
        if t.b is not None:
            ca, sa = math.cos(t.angle), math.sin(t.angle)
            x = (du * ca + dv * sa) / np.float32(t.radius)
            y = (-du * sa + dv * ca) / np.float32(t.b)
            d2 = x * x + y * y
        else:
            ex, ey = t.p1[0] - t.p0[0], t.p1[1] - t.p0[1]
            ll = ex * ex + ey * ey
            tt = np.clip((du * ex + dv * ey) / np.float32(ll), 0.0, 1.0)
            qx, qy = du - tt * np.float32(ex), dv - tt * np.float32(ey)
            d2 = (qx * qx + qy * qy) / np.float32(t.radius**2)
        prof = np.sqrt(np.maximum(1.0 - d2, 0.0)) * np.float32(t.level)
        np.maximum(out, prof, out=out)
    # inhomogeneity (fat/muscle), fixed in anatomy space
    low = cv2.warpAffine(
        anat.tissue_texture,
        _tex_to_img(view, anat.tissue_texture.shape[0], 1.0 / f),
        (wl, hl),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    out *= 1.0 + 0.12 * low
    out = cv2.GaussianBlur(out, (0, 0), 0.8)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def _tex_to_img(view: _View, size: int, img_scale: float) -> np.ndarray:
    """Affine from texture pixel coordinates to (scaled) image pixel coordinates."""
    k = 2 * _TEX_HALF / size  # anatomy units per texture pixel
    tex_to_anat = np.array([[k, 0, -_TEX_HALF + 0.5 * k], [0, k, -_TEX_HALF + 0.5 * k], [0, 0, 1]])
    m = np.vstack([view.m, [0, 0, 1]]) @ tex_to_anat
    if img_scale != 1.0:
        m = np.diag([img_scale, img_scale, 1.0]) @ m
        m[0, 2] += 0.5 * img_scale - 0.5
        m[1, 2] += 0.5 * img_scale - 0.5
    return m[:2].astype(np.float64)


def _crack_width_px(fr: _Fracture, view: _View) -> int:
    return max(1, int(round(fr.width_frac * min(view.h, view.w))))


def _render_bone(
    b: _Bone,
    view: _View,
    tex_img: np.ndarray,
    att: np.ndarray,
    margin: int,
    boxes: list[tuple[_Fracture, Box]],
) -> None:
    """Evaluate one bone in its image bbox, cut its cracks, record crack boxes, accumulate."""
    bounds = [_prim_bounds(p) for p in b.parts]
    ub = (
        min(x[0] for x in bounds),
        min(x[1] for x in bounds),
        max(x[2] for x in bounds),
        max(x[3] for x in bounds),
    )
    sl = view.slice_for(ub)
    if sl is None:  # unreachable with the bounded pose; keep the label count consistent anyway
        for fr in b.fractures:
            logger.warning("fractured bone fell outside the image; emitting a 1-px box")
            boxes.append((fr, (0.0, 0.0, 1.0, 1.0)))
        return
    xa, ya, xb, yb = sl
    u, v = view.grid(sl)
    tex = tex_img[ya:yb, xa:xb]
    local = None
    for pi, p in enumerate(b.parts):
        frs = [f for f in b.fractures if f.part_index == pi]
        a = _eval_prim(p, u, v, tex, frs)
        local = a if local is None else np.maximum(local, a)
    assert local is not None
    if b.fractures:
        support = local > np.float32(0.03)
        keep = np.ones_like(local)
        for fr in b.fractures:
            cap = b.parts[fr.part_index]
            assert isinstance(cap, _Capsule)
            lines, frag = _crack_geometry(fr, cap)
            canvas = np.zeros(local.shape, np.uint8)
            sh = 4
            off = np.array([xa, ya], dtype=np.float64)
            thick = _crack_width_px(fr, view)
            for ln in lines:
                pts = np.round((view.to_img(ln) - off) * (1 << sh)).astype(np.int32)
                cv2.polylines(canvas, [pts], False, 255, thick, cv2.LINE_AA, sh)
            mask = canvas.astype(np.float32) * np.float32(1.0 / 255.0)
            if frag is not None:
                fcan = np.zeros(local.shape, np.uint8)
                pts = np.round((view.to_img(frag) - off) * (1 << sh)).astype(np.int32)
                cv2.fillPoly(fcan, [pts], 255, cv2.LINE_AA, sh)
                keep *= 1.0 + np.float32(0.18 * fr.comminuted[1]) * (fcan > 127)
            keep *= 1.0 - np.float32(fr.depth) * mask
            hit = (mask > 0.3) & support
            ys_, xs_ = np.nonzero(hit)
            if xs_.size:
                x1, x2 = xs_.min() + xa - margin, xs_.max() + xa + 1 + margin
                y1, y2 = ys_.min() + ya - margin, ys_.max() + ya + 1 + margin
            else:  # crack thinner than a pixel everywhere: box the crack centre
                ctr = view.to_img(np.mean(np.concatenate(lines), axis=0))[0]
                x1, x2 = ctr[0] - margin, ctr[0] + margin + 1
                y1, y2 = ctr[1] - margin, ctr[1] + margin + 1
            box = (
                float(max(x1, 0)),
                float(max(y1, 0)),
                float(min(x2, view.w)),
                float(min(y2, view.h)),
            )
            boxes.append((fr, box))
        local *= keep
    att[ya:yb, xa:xb] += local


def _draw_hardware(
    r: np.random.Generator, bones: list[_Bone], view: _View, att: np.ndarray
) -> Box | None:
    """Metal plate + screws along an eligible shaft (lateral or AP projection look)."""
    q = r.random(8)
    nscrew = int(r.integers(3, 7))
    cands = [
        (p, _eligible_interval(p))
        for b in bones
        for p in b.parts
        if isinstance(p, _Capsule) and p.fracturable and p.radius >= 0.045
    ]
    cands = [(p, iv) for p, iv in cands if iv is not None]
    if not cands:
        cands = [
            (p, iv)
            for b in bones
            for p in b.parts
            if isinstance(p, _Capsule)
            for iv in [_eligible_interval(p)]
            if iv is not None
        ]
    if not cands:
        return None
    c, (lo, hi) = cands[int(q[0] * len(cands)) % len(cands)]
    ax, ay, nx, ny, length = _capsule_frame(c)
    plen = min(hi - lo, (0.35 + 0.25 * q[1]) * length, 0.8)
    t0 = lo + (hi - lo - plen) * q[2]
    rad = float(_radius_at(c, t0 + plen / 2, length))
    side = 1.0 if q[3] < 0.5 else -1.0
    lateral = q[4] < 0.6
    canvas = np.zeros((view.h, view.w), np.float32)

    def poly(ts: list[tuple[float, float]], val: float) -> None:
        arr = np.array(ts, dtype=np.float64)
        uv = np.stack(
            [c.p0[0] + arr[:, 0] * ax + arr[:, 1] * nx, c.p0[1] + arr[:, 0] * ay + arr[:, 1] * ny],
            axis=1,
        )
        pts = np.round(view.to_img(uv) * 16).astype(np.int32)
        cv2.fillPoly(canvas, [pts], val, cv2.LINE_AA, 4)

    def circle(t: float, s: float, rr: float, val: float, thick: int) -> None:
        uv = np.array([[c.p0[0] + t * ax + s * nx, c.p0[1] + t * ay + s * ny]])
        ctr = np.round(view.to_img(uv)[0] * 16).astype(np.int32)
        rad_px = int(round(rr * view.px_per_unit * 16))
        cv2.circle(canvas, (int(ctr[0]), int(ctr[1])), rad_px, val, thick, cv2.LINE_AA, 4)

    pw = rad * (0.32 if lateral else 0.9)
    tpos = [t0 + plen * (k + 0.5) / nscrew for k in range(nscrew)]
    if lateral:
        s_in, s_out = side * rad * 1.0, side * (rad * 1.0 + pw)
        poly([(t0, s_in), (t0 + plen, s_in), (t0 + plen, s_out), (t0, s_out)], 3.2)
        sw = rad * 0.2
        for t in tpos:
            tip = -side * rad * (1.05 + 0.15 * q[5])
            poly([(t - sw, s_out), (t + sw, s_out), (t + sw * 0.6, tip), (t - sw * 0.6, tip)], 3.6)
            poly(
                [
                    (t - sw * 2, s_out),
                    (t + sw * 2, s_out),
                    (t + sw * 2, s_out + side * sw * 1.3),
                    (t - sw * 2, s_out + side * sw * 1.3),
                ],
                3.6,
            )
    else:
        off = side * rad * 0.15 * q[6]
        poly(
            [
                (t0, off - pw / 2),
                (t0 + plen, off - pw / 2),
                (t0 + plen, off + pw / 2),
                (t0, off + pw / 2),
            ],
            3.0,
        )
        for t in tpos:
            circle(t, off, pw * 0.32, 4.2, -1)
            circle(t, off, pw * 0.12, 2.4, -1)
    ys_, xs_ = np.nonzero(canvas > 0.5)
    if xs_.size == 0:
        return None
    np.maximum(att, att + canvas, out=att)
    return (float(xs_.min()), float(ys_.min()), float(xs_.max() + 1), float(ys_.max() + 1))


def _draw_letter(r: np.random.Generator, view: _View, att: np.ndarray) -> Box:
    """Radiographer's lead L/R marker: bright framed square with a bright letter in a corner."""
    q = r.random(5)
    letter = "L" if q[0] < 0.5 else "R"
    side = min(view.h, view.w)
    size = max(int(round(side * (0.075 + 0.03 * q[1]))), 9)
    pad = int(round(side * (0.02 + 0.03 * q[2])))
    corner = int(q[3] * 4) % 4
    x0 = pad if corner in (0, 2) else view.w - pad - size
    y0 = pad if corner in (0, 1) else view.h - pad - size
    canvas = np.zeros((size, size), np.uint8)  # OpenCV 5 draws text on 8-bit images only
    border = max(1, size // 12)
    cv2.rectangle(canvas, (0, 0), (size - 1, size - 1), 165, -1)
    cv2.rectangle(canvas, (border, border), (size - 1 - border, size - 1 - border), 57, -1)
    scale = size / 34.0
    thick = max(1, int(round(size / 10)))
    (tw, th), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_DUPLEX, scale, thick)
    org = ((size - tw) // 2, (size + th) // 2)
    cv2.putText(canvas, letter, org, cv2.FONT_HERSHEY_DUPLEX, scale, 255, thick, cv2.LINE_AA)
    patch = canvas.astype(np.float32) * np.float32(4.0 / 255.0)
    region = att[y0 : y0 + size, x0 : x0 + size]
    np.maximum(region, patch, out=region)
    return (float(x0), float(y0), float(x0 + size), float(y0 + size))


def _draw_shortcut(r: np.random.Generator, view: _View, att: np.ndarray, avoid: list[Box]) -> Box:
    """The spurious cue: a filled disc inside a ring, placed on empty background if possible."""
    n_cand = 64
    cand = r.random((n_cand, 2))
    side = min(view.h, view.w)
    diam = max(int(round(0.04 * side)), 5)
    pad = max(2, diam // 4)
    xs = (pad + cand[:, 0] * (view.w - diam - 2 * pad)).astype(np.int64)
    ys = (pad + cand[:, 1] * (view.h - diam - 2 * pad)).astype(np.int64)
    occ = (att > 0.02).astype(np.uint8)
    integ = cv2.integral(occ)
    g = max(2, diam // 3)  # keep a little clearance around the symbol as well
    x1, y1 = np.maximum(xs - g, 0), np.maximum(ys - g, 0)
    x2, y2 = np.minimum(xs + diam + g, view.w), np.minimum(ys + diam + g, view.h)
    filled = (integ[y2, x2] - integ[y1, x2] - integ[y2, x1] + integ[y1, x1]).astype(np.float64)
    for bx in avoid:
        hit_x = (xs < bx[2] + g) & (xs + diam > bx[0] - g)
        hit_y = (ys < bx[3] + g) & (ys + diam > bx[1] - g)
        filled += (hit_x & hit_y) * 1e9
    k = int(np.argmax(filled == 0)) if np.any(filled == 0) else int(np.argmin(filled))
    x0, y0 = int(xs[k]), int(ys[k])
    ctr = (int(round((x0 + diam / 2 - 0.5) * 16)), int(round((y0 + diam / 2 - 0.5) * 16)))
    rad = diam / 2
    patch = np.zeros_like(att)
    ring_t = max(1, int(round(rad * 0.22)))
    cv2.circle(patch, ctr, int(round((rad - ring_t / 2) * 16)), 4.0, ring_t, cv2.LINE_AA, 4)
    cv2.circle(patch, ctr, int(round(rad * 0.45 * 16)), 4.0, -1, cv2.LINE_AA, 4)
    np.maximum(att, patch, out=att)
    return (float(x0), float(y0), float(x0 + diam), float(y0 + diam))


def _expose(r: np.random.Generator, att: np.ndarray, side: int) -> np.ndarray:
    """Attenuation -> film density: exposure, heel effect, gamma, detector blur, noise."""
    q = r.random(9)
    k = 0.85 + 0.45 * q[0]
    gamma = 0.8 + 0.45 * q[1]
    floor = 0.015 + 0.05 * q[2]
    h, w = att.shape
    ang = 2 * math.pi * q[3]
    heel_amp = 0.1 * q[4]
    gx = np.linspace(-1, 1, w, dtype=np.float32)[None, :] * np.float32(math.cos(ang))
    gy = np.linspace(-1, 1, h, dtype=np.float32)[:, None] * np.float32(math.sin(ang))
    heel = 1.0 + np.float32(heel_amp) * (gx + gy)
    img = 1.0 - np.exp(-np.float32(k) * att * heel)
    img = np.power(img, np.float32(gamma))
    img = np.float32(floor) + np.float32(1.0 - floor - 0.01) * img
    sigma = (0.35 + 0.6 * q[5]) * side / 512.0
    if sigma >= 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = r.standard_normal((h, w), dtype=np.float32)
    # small renders stand for down-sampled films, whose per-pixel noise is averaged down
    res = min(1.0, side / 512.0) ** 0.5
    sg = np.float32((0.006 + 0.012 * q[6]) * res)
    sp = np.float32((0.01 + 0.025 * q[7]) * res)
    img = img + noise * (sg + sp * np.sqrt(img))
    if q[8] < 0.5:  # film grain has a little spatial correlation on some scanners
        img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def render_radiograph(
    anatomy_rng: np.random.Generator,
    view_rng: np.random.Generator,
    *,
    height: int,
    width: int,
    body_part: str,
    n_fractures: int,
    hardware: bool,
    letter_marker: bool,
    shortcut_marker: bool,
    crack_scale: float = 1.0,
) -> RenderedPhantom:
    """Render one synthetic radiograph; ground truth comes from the pixels actually drawn.

    ``anatomy_rng`` draws bones, fracture sites (bone coordinates) and hardware; ``view_rng``
    draws pose, exposure, noise and marker placement. Both are consumed by a fixed number of
    draws, so flags and ``n_fractures`` never perturb the rest of the image.
    """
    if body_part not in BODY_PARTS:
        raise ValueError(f"body_part must be one of {BODY_PARTS}, got {body_part!r}")
    if n_fractures < 0:
        raise ValueError(f"n_fractures must be >= 0, got {n_fractures}")
    if height < 16 or width < 16:
        raise ValueError(f"image must be at least 16x16, got {height}x{width}")

    a_seeds = anatomy_rng.integers(0, 2**63 - 1, size=4)
    v_seeds = view_rng.integers(0, 2**63 - 1, size=4)
    bone_rng, frac_rng, hw_rng, tex_rng = (np.random.default_rng(int(s)) for s in a_seeds)
    pose_rng, expo_rng, letter_rng, short_rng = (np.random.default_rng(int(s)) for s in v_seeds)

    bones, tissue = _BUILDERS[body_part](bone_rng)
    tex, low = _texture(tex_rng)
    anat = _Anatomy(bones, tissue, tex, low)
    fracs = [_draw_fracture(frac_rng) for _ in range(n_fractures)]
    for fr in fracs:  # conspicuity knob: scales the drawn crack only, no extra random draws
        fr.width_frac *= crack_scale
    _assign_fractures(bones, fracs)

    view = _draw_view(pose_rng, height, width)
    side = min(height, width)
    margin = int(np.clip(round(side / 160), 2, 4))

    att = _render_tissue(anat, view) * np.float32(0.4)
    tex_img = cv2.warpAffine(
        tex,
        _tex_to_img(view, _TEX_SIZE, 1.0),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    recorded: list[tuple[_Fracture, Box]] = []
    for b in bones:
        _render_bone(b, view, tex_img, att, margin, recorded)
    order = {id(f): i for i, f in enumerate(fracs)}
    recorded.sort(key=lambda fb: order[id(fb[0])])

    hw_boxes: list[Box] = []
    if hardware:
        hb = _draw_hardware(hw_rng, bones, view, att)
        if hb is not None:
            hw_boxes.append(hb)
    marker_boxes: list[Box] = []
    if letter_marker:
        marker_boxes.append(_draw_letter(letter_rng, view, att))
    shortcut = _draw_shortcut(short_rng, view, att, marker_boxes) if shortcut_marker else None

    image = _expose(expo_rng, att, side)
    logger.debug("rendered %s %dx%d with %d fracture(s)", body_part, height, width, n_fractures)
    return RenderedPhantom(
        image=image,
        fracture_boxes=[bx for _, bx in recorded],
        fracture_types=[f.kind for f, _ in recorded],
        hardware_boxes=hw_boxes,
        marker_boxes=marker_boxes,
        shortcut_box=shortcut,
    )
