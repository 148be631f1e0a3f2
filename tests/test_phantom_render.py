"""Tests for the synthetic radiograph renderer (data_tools.phantom_render)."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools.phantom_render import (
    BODY_PARTS,
    FRACTURE_TYPES,
    RenderedPhantom,
    render_radiograph,
)

SIZE = 160


def _render(
    anatomy_seed: int = 0,
    view_seed: int = 1,
    *,
    height: int = SIZE,
    width: int = SIZE,
    body_part: str = "leg",
    n_fractures: int = 1,
    hardware: bool = False,
    letter_marker: bool = False,
    shortcut_marker: bool = False,
) -> RenderedPhantom:
    return render_radiograph(
        np.random.default_rng(anatomy_seed),
        np.random.default_rng(view_seed),
        height=height,
        width=width,
        body_part=body_part,
        n_fractures=n_fractures,
        hardware=hardware,
        letter_marker=letter_marker,
        shortcut_marker=shortcut_marker,
    )


def _region(img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return img[y1:y2, x1:x2]


def test_deterministic_bit_identical() -> None:
    kw = dict(
        body_part="mixed", n_fractures=2, hardware=True, letter_marker=True, shortcut_marker=True
    )
    a = _render(3, 4, **kw)
    b = _render(3, 4, **kw)
    assert np.array_equal(a.image, b.image)
    assert a.fracture_boxes == b.fracture_boxes
    assert a.fracture_types == b.fracture_types
    assert a.hardware_boxes == b.hardware_boxes
    assert a.marker_boxes == b.marker_boxes
    assert a.shortcut_box == b.shortcut_box


@pytest.mark.parametrize("shape", [(SIZE, SIZE), (128, 96), (96, 144)])
def test_shape_dtype_range(shape: tuple[int, int]) -> None:
    r = _render(height=shape[0], width=shape[1], letter_marker=True, shortcut_marker=True)
    assert r.image.shape == shape
    assert r.image.dtype == np.float32
    assert float(r.image.min()) >= 0.0 and float(r.image.max()) <= 1.0
    assert np.isfinite(r.image).all()


@pytest.mark.parametrize("body_part", BODY_PARTS)
def test_every_body_part_renders_with_valid_boxes(body_part: str) -> None:
    for seed, n in ((0, 0), (1, 1), (2, 3)):
        r = _render(seed, seed + 10, body_part=body_part, n_fractures=n)
        h, w = r.image.shape
        assert len(r.fracture_boxes) == n
        assert len(r.fracture_types) == n
        assert all(t in FRACTURE_TYPES for t in r.fracture_types)
        for x1, y1, x2, y2 in r.fracture_boxes:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            # tight around the crack, not around the whole bone
            assert (x2 - x1) * (y2 - y1) < 0.15 * h * w
        # a radiograph: dark air background, brighter anatomy
        assert float(np.percentile(r.image, 5)) < 0.15
        assert float(np.percentile(r.image, 99)) > 0.45


@pytest.mark.parametrize("body_part", BODY_PARTS)
def test_fracture_darkens_its_box(body_part: str) -> None:
    for seed in range(3):
        kw = dict(body_part=body_part, letter_marker=True, shortcut_marker=True)
        cracked = _render(seed, 100 + seed, n_fractures=1, **kw)
        intact = _render(seed, 100 + seed, n_fractures=0, **kw)
        assert intact.fracture_boxes == []
        box = cracked.fracture_boxes[0]
        assert _region(cracked.image, box).mean() < _region(intact.image, box).mean()
        # everything far from the crack is unchanged (fracture draws do not perturb the rest)
        mask = np.ones(cracked.image.shape, bool)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        mask[max(y1 - 12, 0) : y2 + 12, max(x1 - 12, 0) : x2 + 12] = False
        far_diff = np.abs(cracked.image - intact.image)[mask]
        assert float(np.median(far_diff)) < 1e-3


def test_first_fractures_stable_when_more_are_added() -> None:
    one = _render(7, 8, body_part="hand", n_fractures=1)
    two = _render(7, 8, body_part="hand", n_fractures=2)
    assert two.fracture_types[0] == one.fracture_types[0]
    # same crack site; the box may only grow where a second crack overlaps it
    b1, b2 = one.fracture_boxes[0], two.fracture_boxes[0]
    assert b2[0] <= b1[0] + 1 and b2[1] <= b1[1] + 1 and b2[2] >= b1[2] - 1 and b2[3] >= b1[3] - 1


def test_same_anatomy_new_view_differs() -> None:
    a = _render(5, 1, n_fractures=1)
    b = _render(5, 2, n_fractures=1)
    assert not np.array_equal(a.image, b.image)
    assert float(np.abs(a.image - b.image).mean()) > 0.01
    assert a.fracture_types == b.fracture_types  # same patient, same fracture


def test_shortcut_marker_present_iff_requested_and_bright() -> None:
    for seed, part in enumerate(BODY_PARTS):
        with_m = _render(seed, seed + 1, body_part=part, shortcut_marker=True)
        without = _render(seed, seed + 1, body_part=part, shortcut_marker=False)
        assert without.shortcut_box is None
        assert with_m.shortcut_box is not None
        x1, y1, x2, y2 = with_m.shortcut_box
        h, w = with_m.image.shape
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert 0.02 * SIZE <= x2 - x1 <= 0.08 * SIZE
        region = _region(with_m.image, with_m.shortcut_box)
        assert float(region.max()) > 0.85
        assert region.mean() > _region(without.image, with_m.shortcut_box).mean() + 0.2


def test_letter_marker_box() -> None:
    with_m = _render(2, 3, letter_marker=True)
    without = _render(2, 3, letter_marker=False)
    assert without.marker_boxes == []
    assert len(with_m.marker_boxes) == 1
    box = with_m.marker_boxes[0]
    assert _region(with_m.image, box).mean() > _region(without.image, box).mean() + 0.2


@pytest.mark.parametrize("body_part", BODY_PARTS)
def test_hardware_is_brightest(body_part: str) -> None:
    kw = dict(body_part=body_part, n_fractures=0)
    with_hw = _render(11, 12, hardware=True, **kw)
    without = _render(11, 12, hardware=False, **kw)
    assert without.hardware_boxes == []
    assert len(with_hw.hardware_boxes) == 1
    metal = (with_hw.image - without.image) > 0.1
    assert metal.sum() > 10
    bone_top = float(np.percentile(without.image, 99.5))
    assert float(with_hw.image[metal].mean()) > bone_top
    x1, y1, x2, y2 = (int(round(v)) for v in with_hw.hardware_boxes[0])
    assert metal[y1:y2, x1:x2].sum() >= 0.95 * metal.sum()


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        _render(body_part="skull")
    with pytest.raises(ValueError):
        _render(n_fractures=-1)
