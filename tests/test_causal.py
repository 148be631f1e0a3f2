"""The causal box test: a model that reads only one region loses its call when that region is
removed and not when matched controls are; the controls keep size and shape, stay in the
content, off the boxes, and are seeded; named regions from a CSV reach the result; a bad CSV
is one clear error naming the file; and the check runs through ``run_audit``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_audit import FAST, SIZE, _classifier

from fracdet.audit import run_audit
from fracdet.audit.check_causal import CHECK, DETECTOR, GT, reading
from fracdet.audit.checks import CHECKS, CheckSubject
from fracdet.audit.config import AuditConfig
from fracdet.audit.inputs import AuditItem
from fracdet.data.formats import Box
from fracdet.data.geometry import box_to_model_frame, boxes_mask, content_region
from fracdet.data.regions import check_regions, read_regions, write_regions
from fracdet.errors import ConfigError, DataError
from fracdet.explain.ablation import ablate_regions, control_shifts, shift_mask

S = 48  # the toy classifier's frame
ROWS, COLS = slice(10, 18), slice(16, 24)  # the only pixels it reads, in that frame


class RegionReader(torch.nn.Module):
    """A pixel-space classifier whose logit is ``40 * (mean of one region - 0.6)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x[:, :, ROWS, COLS].mean(dim=(1, 2, 3)) - 0.6)[:, None]


def _toy_images(n: int) -> torch.Tensor:
    """Textured content 24 px wide letterboxed in the 48 px square, the region bright."""
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(n, 1, S, S)
    images[:, :, :, 12:36] = 0.2 + 0.2 * torch.rand(n, 1, S, 24, generator=g)
    images[:, :, ROWS, COLS] = 1.0
    return images


def _predict(images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(RegionReader()(images)).flatten().numpy().astype(np.float64)


# --- the control sampler ---------------------------------------------------------------------


def _brute_force(mask, content, avoid):
    """Every shift that keeps the whole mask in ``content`` and off ``avoid | mask``."""
    top, left, h, w = content
    ys, xs = np.nonzero(mask)
    found = set()
    for dy in range(-S, S):
        for dx in range(-S, S):
            y, x = ys + dy, xs + dx
            if y.min() < top or y.max() >= top + h or x.min() < left or x.max() >= left + w:
                continue
            if not (avoid | mask)[y, x].any():
                found.add((dy, dx))
    return found


def test_controls_are_every_free_shift_of_the_same_shape_inside_the_content():
    # two fracture boxes moved together; a named region elsewhere to avoid too
    mask = boxes_mask([Box(16, 10, 24, 18), Box(26, 30, 30, 33)], S, S)
    avoid = boxes_mask([Box(14, 36, 20, 44)], S, S)
    content = content_region(48, 24, S)  # a 24 x 48 image letterboxed: columns 12..35
    assert content == (0, 12, 48, 24)
    every = control_shifts(
        mask, content=content, avoid=avoid, n=10**6, rng=np.random.default_rng(0)
    )
    assert set(every) == _brute_force(mask, content, avoid) and len(every) == len(set(every))
    for dy, dx in every:
        moved = shift_mask(mask, dy, dx)
        assert moved.sum() == mask.sum()  # same size and shape: nothing cut off
        assert not (moved & (mask | avoid)).any()  # never on the boxes nor the named region
        ys, xs = np.nonzero(moved)
        assert xs.min() >= 12 and xs.max() <= 35  # never in the letterbox padding


def test_controls_are_seeded_distinct_and_fewer_when_there_is_no_room():
    mask = boxes_mask([Box(16, 10, 24, 18)], S, S)
    content = (0, 12, 48, 24)
    draw = lambda seed: control_shifts(  # noqa: E731
        mask, content=content, avoid=None, n=4, rng=np.random.default_rng(seed)
    )
    assert draw(3) == draw(3) and draw(3) != draw(4)
    assert len(draw(3)) == 4 and len(set(draw(3))) == 4
    # content only as large as the box: nowhere else to go
    tight = control_shifts(
        mask, content=(10, 16, 8, 8), avoid=None, n=4, rng=np.random.default_rng(0)
    )
    assert tight == []


def test_controls_are_matched_in_grey_level_bone_with_bone_not_air():
    image = np.full((S, S), 0.1)
    image[:, :20] = 0.8  # "bone" on the left, "air" on the right
    mask = boxes_mask([Box(4, 10, 12, 18)], S, S)
    content = (0, 0, S, S)
    free = control_shifts(mask, content=content, avoid=None, n=10**6, rng=np.random.default_rng(0))
    matched = control_shifts(
        mask, content=content, avoid=None, n=8, rng=np.random.default_rng(0), image=image
    )
    assert len(matched) == 8
    assert all(np.nonzero(shift_mask(mask, dy, dx))[1].max() < 20 for dy, dx in matched)
    # uniform draws would mostly land on air: most free positions are there
    assert np.mean([np.nonzero(shift_mask(mask, *m))[1].max() >= 20 for m in free]) > 0.5


# --- the ablation itself ---------------------------------------------------------------------


def test_removing_the_region_drops_the_call_and_controls_elsewhere_do_not():
    images = _toy_images(6)
    mask = np.zeros((S, S), dtype=bool)
    mask[ROWS, COLS] = True
    res = ablate_regions(
        _predict,
        images,
        [mask] * 6,
        contents=[(0, 12, 48, 24)] * 6,
        n_controls=3,
        seeds=list(range(6)),
        keep_images=True,
    )
    assert np.all(res.base > 0.999) and np.all(res.ablated < 0.01)  # imputed from ~0.3 texture
    assert np.array_equal(res.control_drop, np.zeros(6))  # the model never sees a control
    # the removed pixels are filled from their neighbours, everything else is kept bit for bit
    filled = res.images[0][0, 0]
    assert torch.equal(filled[~torch.as_tensor(mask)], images[0, 0][~torch.as_tensor(mask)])
    assert 0.15 < float(filled[ROWS, COLS].mean()) < 0.45
    again = ablate_regions(
        _predict, images[2:3], [mask], contents=[(0, 12, 48, 24)], n_controls=3, seeds=[2]
    )
    assert again.shifts[0] == res.shifts[2] and again.ablated[0] == res.ablated[2]


# --- the check on a hand-built classifier ----------------------------------------------------


def _toy_subject(tmp_path: Path, n: int = 10) -> CheckSubject:
    meta = SimpleNamespace(threshold=0.5, temperature=1.0, image_size=S, keep_aspect=True)
    clf = SimpleNamespace(
        name="toy", model=RegionReader(), meta=meta, device=torch.device("cpu"), precision="fp32"
    )
    gt = Box(4, 10, 12, 18)  # original 24 x 48 image -> the region in the model's frame
    framed = box_to_model_frame(gt, 48, 24, S)
    assert boxes_mask([framed], S, S)[ROWS, COLS].all() and boxes_mask([framed], S, S).sum() == 64
    items = [
        AuditItem(k + 1, f"img{k}.png", tmp_path / f"img{k}.png", 1, (gt,), 24, 48)
        for k in range(n)
    ]
    return CheckSubject(
        clf=clf,
        items=items,
        images=_toy_images(n),
        labels=np.ones(n, dtype=np.int64),
        gt_boxes=[[framed]] * n,
        gt_masks=[boxes_mask([framed], S, S)] * n,
        det_boxes=[[Box(14, 30, 22, 38)]] * n,  # the detector looks elsewhere
        make_explainers=lambda model: {},
        audit_dir=tmp_path,
        seed=0,
    )


def test_the_check_finds_the_region_the_model_reads_with_a_small_p(tmp_path):
    cfg = AuditConfig(dataset=tmp_path, n_boot=500)
    subject = _toy_subject(tmp_path)
    result = CHECK.run(subject, cfg)
    gt = result["regions"][GT]
    assert gt["n"] == 10 and gt["drop"]["mean"] > 0.99
    assert gt["control_drop"]["mean"] == 0.0 and gt["flipped_controls"] == 0.0
    assert gt["flipped"] == 1.0
    diff = gt["difference"]
    assert diff["ci_low"] > 0.99
    # ten positive differences: the exact two-sided signed-rank p is 2 / 2**10
    assert diff["wilcoxon_p"] == pytest.approx(2 / 2**10)
    assert result["regions"][DETECTOR]["drop"]["mean"] == 0.0  # the detector's boxes hold nothing
    assert (tmp_path / result["figure"]).is_file()
    line = reading(result)
    assert line.startswith("Removing the fracture boxes lowers the fracture probability by ")
    assert "more than removing matched boxes elsewhere (Wilcoxon p = 0.002, 10 images)" in line
    (section,) = CHECK.sections({"toy": result}, {"models": ["toy"]}, tmp_path)
    assert section.heading == "Causal box test: toy" and line in section.text
    assert [r["removed"] for r in section.table] == [GT, DETECTOR]


def test_causal_images_caps_the_images_and_the_settings_name_the_regions_file(tmp_path):
    cfg = AuditConfig(dataset=tmp_path, causal_images=3, causal_controls=2)
    result = CHECK.run(_toy_subject(tmp_path), cfg)
    assert result["regions"][GT]["n"] == 3
    assert all(len(im["p_controls"]) == 2 for im in result["regions"][GT]["images"])
    assert CHECK.settings(cfg)["causal_regions"] is None
    with pytest.raises(ConfigError, match="causal_controls must be >= 1"):
        AuditConfig(dataset=tmp_path, causal_controls=0)


# --- the named-regions CSV -------------------------------------------------------------------


def test_regions_round_trip_and_bad_files_are_one_clear_error(tmp_path):
    path = write_regions(
        tmp_path / "r.csv",
        [("a.png", "marker", Box(1, 2, 5, 6)), ("a.png", "marker", Box(7, 7, 9, 9))],
    )
    regions = read_regions(path)
    assert regions == {"a.png": {"marker": [Box(1, 2, 5, 6), Box(7, 7, 9, 9)]}}
    check_regions(regions, {"a.png": (10, 10)}, path)
    with pytest.raises(DataError, match=r"r\.csv: image 'a\.png' of the named regions is not in"):
        check_regions(regions, {"b.png": (10, 10)}, path)
    with pytest.raises(DataError, match=r"r\.csv: region 'marker' of 'a\.png' .* outside its 8x8"):
        check_regions(regions, {"a.png": (8, 8)}, path)
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,region,x1,y1,x2\na.png,m,1,2,3\n")
    with pytest.raises(DataError, match=r"bad\.csv: named regions CSV lacks column\(s\) y2"):
        read_regions(bad)
    bad.write_text("image_id,region,x1,y1,x2,y2\na.png,m,1,2,x,4\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 2: x1, y1, x2, y2 must be numbers"):
        read_regions(bad)
    bad.write_text("image_id,region,x1,y1,x2,y2\na.png,m,5,2,5,4\n")
    with pytest.raises(DataError, match="line 2: box .* has no area"):
        read_regions(bad)


# --- through run_audit, with the phantom generator's shortcut markers -------------------------


@pytest.fixture(scope="module")
def shortcut_set(tmp_path_factory) -> tuple[Path, Path]:
    """24 phantoms whose fractured images all carry the shortcut marker, converted, and the
    markers' regions CSV."""
    from data_tools.phantoms import PhantomConfig, generate_phantoms, shortcut_regions
    from fracdet.data.convert import ConvertConfig, convert

    root = tmp_path_factory.mktemp("shortcut")
    source = generate_phantoms(
        PhantomConfig(
            root / "phantoms",
            count=24,
            size=SIZE,
            seed=0,
            prevalence=0.8,
            shortcut_rate=1.0,
            workers=1,
        )
    )
    dataset = convert(ConvertConfig(source=source, output=root / "dataset", seed=0)).output
    return dataset, shortcut_regions(source)


def test_the_check_runs_in_the_audit_with_the_markers_as_named_regions(shortcut_set, tmp_path):
    from data_tools.phantoms import SHORTCUT_REGION

    dataset, regions = shortcut_set
    rows = regions.read_text().splitlines()
    assert rows[0] == "image_id,region,x1,y1,x2,y2" and len(rows) > 4
    assert "causal" in AuditConfig(dataset=dataset).checks and CHECKS["causal"]
    model = _classifier(tmp_path / "model", seed=0)
    out = tmp_path / "audit"
    options = {**FAST, "split": "all", "check_images": 4, "causal_controls": 2}
    del options["checks"]  # test_audit's fast config runs none; this test names its own
    run_audit(
        AuditConfig(
            dataset=dataset,
            output=out,
            classifiers=(model,),
            checks=("causal",),
            causal_regions=regions,
            **options,
        )
    )
    metrics = json.loads((out / "metrics.json").read_text())
    result = metrics["checks"]["causal"]["model"]
    assert result["regions"][GT]["n"] == 4 and not result["detector"]
    marker = result["regions"][SHORTCUT_REGION]
    assert marker["n"] == 4 and len(marker["images"][0]["p_controls"]) == 2
    assert (out / result["figure"]).is_file()
    assert "Causal box test: model" in (out / "report.html").read_text()

    # an image the dataset does not have: one error naming the file
    bad = tmp_path / "bad.csv"
    bad.write_text(regions.read_text() + "nope.jpg,marker,1,1,4,4\n")
    with pytest.raises(DataError, match=r"bad\.csv: image 'nope\.jpg' of the named regions"):
        run_audit(
            AuditConfig(
                dataset=dataset,
                output=tmp_path / "again",
                classifiers=(model,),
                checks=("causal",),
                causal_regions=bad,
                **options,
            )
        )
    assert not (tmp_path / "again").exists()  # refused before any model loads or file is written


def test_a_trained_shortcut_classifier_loses_its_call_with_the_marker_not_the_fracture(
    tmp_path,
):
    """The shortcut shown without any attribution map: a tiny CNN trained on phantoms whose
    fractured images all carry the marker flips every call when the marker is removed, and
    removing the fracture boxes leaves its probability where it was."""
    from data_tools.phantoms import (
        SHORTCUT_REGION,
        PhantomConfig,
        generate_phantoms,
        shortcut_regions,
    )
    from fracdet.audit.checks import _subject, select_check_items
    from fracdet.audit.inputs import load_inputs
    from fracdet.data.convert import ConvertConfig, convert

    source = generate_phantoms(
        PhantomConfig(
            tmp_path / "phantoms",
            count=64,
            size=48,
            seed=0,
            prevalence=0.5,
            shortcut_rate=1.0,
            crack_scale=10.0,
            hardware_rate=0.0,
            letter_marker_rate=0.0,
            workers=1,
        )
    )
    dataset = convert(ConvertConfig(source=source, output=tmp_path / "dataset", seed=0)).output
    cfg = AuditConfig(dataset=dataset, causal_regions=shortcut_regions(source), n_boot=200)
    meta = SimpleNamespace(threshold=0.5, temperature=1.0, image_size=48, keep_aspect=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 1),
    )
    clf = SimpleNamespace(
        name="shortcut", model=net, meta=meta, device=torch.device("cpu"), precision="fp32"
    )
    items = load_inputs(dataset, split="all").items
    everything = _subject(clf, list(items), cfg, None, tmp_path)
    x, y = everything.images, torch.as_tensor(everything.labels).float()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        batch = torch.randint(0, len(x), (32,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net(x[batch]).flatten(), y[batch]
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    assert np.mean((everything.fracture_probability(x) >= 0.5) == everything.labels) == 1.0

    result = CHECK.run(_subject(clf, select_check_items(items, 8), cfg, None, tmp_path), cfg)
    gt, marker = result["regions"][GT], result["regions"][SHORTCUT_REGION]
    assert gt["n"] == marker["n"] == 8
    assert marker["flipped"] == 1.0 and marker["flipped_controls"] == 0.0
    assert marker["difference"]["ci_low"] > 0.5 and marker["difference"]["wilcoxon_p"] < 0.01
    assert gt["flipped"] == 0.0 and abs(gt["drop"]["mean"]) < 0.05


def test_the_cli_and_the_config_file_reach_the_options(monkeypatch, tmp_path):
    from test_cli import invoke

    import fracdet.audit

    seen = []
    monkeypatch.setattr(
        fracdet.audit, "run_audit", lambda cfg: seen.append(cfg) or SimpleNamespace(line=str)
    )
    config = Path(__file__).resolve().parents[1] / "configs" / "audit.yaml"
    options = ["--config", config, "--causal-regions", tmp_path / "r.csv"]
    result = invoke("audit", tmp_path, "--cls", tmp_path / "a", *options)
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert "causal" in cfg.checks and cfg.causal_regions == tmp_path / "r.csv"
    assert (cfg.causal_images, cfg.causal_controls) == (None, 4)


def test_shortcut_regions_needs_the_generators_metadata(tmp_path):
    from data_tools.phantoms import shortcut_regions

    with pytest.raises(DataError, match="phantom_meta.csv: no phantom_meta.csv"):
        shortcut_regions(tmp_path)
