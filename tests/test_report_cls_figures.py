"""Classification figures: what they draw (operating points, cell counts, bars, colours), not
only that a PNG appeared.

Each plot function builds a bare Figure and hands it to ``save_figure``; the ``drawn`` fixture
keeps those figures so the tests can read their artists back.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

import fracdet.report.cls_figures as cls_figures
from fracdet.cls.calibration import expected_calibration_error, reliability_curve
from fracdet.report import plot_confusion, plot_curves, plot_pr, plot_reliability, plot_roc


@pytest.fixture
def drawn(monkeypatch) -> dict[str, object]:
    """File name -> the Figure saved there (the real save still runs)."""
    figures: dict[str, object] = {}
    real_save = cls_figures.save_figure

    def keep(fig, path, **kwargs):
        figures[Path(path).name] = fig
        return real_save(fig, path, **kwargs)

    monkeypatch.setattr(cls_figures, "save_figure", keep)
    return figures


def _data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.clip(0.35 * y + 0.65 * rng.random(n), 0.0, 1.0)


def _line(ax, prefix: str):
    found = [line for line in ax.lines if str(line.get_label()).startswith(prefix)]
    assert len(found) == 1, [line.get_label() for line in ax.lines]
    return found[0]


def _assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 300
    assert not list(path.parent.glob(".*tmp*")), "temporary files left behind"


# Hand case: scores and labels with the threshold 0.5 counted by hand.
#   called positive (p >= .5): .5 (y 1), .6 (y 0), .9 (y 1)  -> tp 2, fp 1
#   called negative:           .1 (y 0), .2 (y 0), .4 (y 1)  -> tn 2, fn 1
#   FPR 1/3, TPR 2/3, precision 2/3.
Y_H = np.array([0, 0, 1, 1, 0, 1])
P_H = np.array([0.1, 0.2, 0.4, 0.5, 0.6, 0.9])


def test_roc_marks_the_operating_point_and_draws_sklearns_curve(drawn, tmp_path):
    path = plot_roc(Y_H, P_H, tmp_path / "roc.png", operating_point=0.5)
    _assert_png(path)
    ax = drawn["roc.png"].axes[0]
    point = _line(ax, "threshold 0.5")
    assert point.get_xdata().tolist() == pytest.approx([1 / 3])
    assert point.get_ydata().tolist() == pytest.approx([2 / 3])
    curve = _line(ax, "AUROC")
    fpr, tpr, _ = roc_curve(Y_H, P_H)
    assert curve.get_xdata().tolist() == pytest.approx(fpr.tolist())
    assert curve.get_ydata().tolist() == pytest.approx(tpr.tolist())
    assert curve.get_label() == f"AUROC = {roc_auc_score(Y_H, P_H):.3f}"


def test_roc_without_operating_point_draws_none(drawn, tmp_path):
    plot_roc(Y_H, P_H, tmp_path / "roc.png")
    assert not [
        line
        for line in drawn["roc.png"].axes[0].lines
        if str(line.get_label()).startswith("threshold")
    ]


def test_pr_marks_recall_and_precision_and_the_prevalence(drawn, tmp_path):
    plot_pr(Y_H, P_H, tmp_path / "pr.png", operating_point=0.5, title="PR <test>")
    ax = drawn["pr.png"].axes[0]
    point = _line(ax, "threshold 0.5")
    assert (point.get_xdata()[0], point.get_ydata()[0]) == pytest.approx((2 / 3, 2 / 3))
    assert list(_line(ax, "prevalence").get_ydata()) == pytest.approx([0.5, 0.5])
    assert _line(ax, "AP").get_label() == f"AP = {average_precision_score(Y_H, P_H):.3f}"
    assert ax.get_title() == "PR <test>"


def test_pr_skips_an_operating_point_with_no_positive_call(drawn, tmp_path):
    # Nothing reaches 0.95: precision is undefined there, so no point is made up.
    plot_pr(Y_H, P_H, tmp_path / "pr.png", operating_point=0.95)
    labels = [str(line.get_label()) for line in drawn["pr.png"].axes[0].lines]
    assert not [label for label in labels if label.startswith("threshold")] and any(
        label.startswith("AP") for label in labels
    )


@pytest.mark.parametrize("label", [0, 1])
def test_curves_say_undefined_on_one_class(drawn, tmp_path, label):
    y, p = np.full(20, label), np.linspace(0.0, 1.0, 20)
    for plot in (plot_roc, plot_pr):
        _assert_png(plot(y, p, tmp_path / f"{plot.__name__}.png", operating_point=0.5))
        ax = drawn[f"{plot.__name__}.png"].axes[0]
        assert not ax.lines and [t.get_text() for t in ax.texts] == [
            "undefined: only one class in y_true"
        ]


def _pixel(fig, ax, x: float, y: float) -> np.ndarray:
    """RGB of the rendered figure at data coordinates ``(x, y)`` of ``ax``."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    px, py = ax.transData.transform((x, y))
    return image[image.shape[0] - int(round(py)), int(round(px))]


def test_confusion_writes_each_count_in_its_cell_and_shades_by_count(drawn, tmp_path):
    # rows = truth, columns = prediction; counts above half the maximum (32.5) get white text.
    plot_confusion([[40, 10], [5, 65]], ["not fractured", "fractured"], tmp_path / "cm.png")
    fig = drawn["cm.png"]
    ax = fig.axes[0]
    cells = {(t.get_position(), t.get_text(), t.get_color()) for t in ax.texts}
    assert cells == {
        ((0, 0), "40", "white"),
        ((1, 0), "10", "black"),
        ((0, 1), "5", "black"),
        ((1, 1), "65", "white"),
    }
    assert [t.get_text() for t in ax.get_xticklabels()] == ["not fractured", "fractured"]
    # Pixels a third of a cell from the centre (clear of the digits): 65 is dark blue, 5 near white.
    dark, light = _pixel(fig, ax, 1.3, 1.3), _pixel(fig, ax, -0.3, 1.3)
    assert dark.sum() < 250 and dark[2] > dark[0], dark
    assert light.min() > 200, light


def test_confusion_of_floats_and_three_classes(drawn, tmp_path):
    plot_confusion(np.eye(3) * 7, ["a", "b", "c"], tmp_path / "cm3.png")
    texts = sorted((t.get_position(), t.get_text()) for t in drawn["cm3.png"].axes[0].texts)
    assert len(texts) == 9 and [text for pos, text in texts if pos[0] == pos[1]] == ["7", "7", "7"]
    assert {text for pos, text in texts if pos[0] != pos[1]} == {"0"}


def test_reliability_draws_the_given_curve_and_ece(drawn, tmp_path):
    y, p = _data()
    curve = reliability_curve(y, p, n_bins=10)
    ece = expected_calibration_error(y, p, n_bins=10)
    _assert_png(plot_reliability(curve, tmp_path / "rel.png", ece=ece))
    top, hist = drawn["rel.png"].axes
    assert top.get_title() == f"Reliability (ECE = {ece:.3f}, 10 bins)"
    filled = curve.counts > 0
    assert [bar.get_height() for bar in top.patches] == pytest.approx(
        curve.fraction_positive[filled].tolist()
    )
    assert [bar.get_height() for bar in hist.patches] == curve.counts.tolist()
    observed = _line(top, "mean predicted")
    assert observed.get_xdata().tolist() == pytest.approx(curve.mean_predicted[filled].tolist())


def test_reliability_takes_any_binned_curve_and_checks_its_shapes(drawn, tmp_path):
    # The report package knows no fracdet.cls type: any object with the four arrays will do.
    curve = SimpleNamespace(
        bin_centers=np.array([0.25, 0.75]),
        mean_predicted=np.array([0.2, np.nan]),
        fraction_positive=np.array([0.5, np.nan]),
        counts=np.array([4, 0]),
    )
    plot_reliability(curve, tmp_path / "rel.png", title="Calib")
    top, hist = drawn["rel.png"].axes
    assert top.get_title() == "Calib (2 bins)"
    assert [bar.get_height() for bar in top.patches] == [0.5]  # the empty bin has no bar
    assert [bar.get_height() for bar in hist.patches] == [4, 0]
    bad = SimpleNamespace(**{**vars(curve), "counts": np.array([4, 0, 1])})
    with pytest.raises(ValueError, match=r"shapes \(2,\), \(2,\), \(2,\), \(3,\)"):
        plot_reliability(bad, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_reliability_on_one_class(drawn, tmp_path):
    y, p = np.zeros(20, int), np.linspace(0.0, 1.0, 20)
    plot_reliability(reliability_curve(y, p, n_bins=5), tmp_path / "rel.png")
    top, _ = drawn["rel.png"].axes
    assert [bar.get_height() for bar in top.patches] == [0.0] * 5


def test_training_curves_split_losses_from_metrics_and_skip_missing(drawn, tmp_path):
    history = [
        {"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_auroc": 0.6},
        {"epoch": 2, "train_loss": 0.6, "val_loss": 0.7, "val_auroc": None},
        {"epoch": 3, "train_loss": 0.4, "val_loss": 0.65, "val_auroc": 0.8},
    ]
    path = plot_curves(history, ["train_loss", "val_loss", "val_auroc"], tmp_path / "sub" / "c.png")
    assert path == tmp_path / "sub" / "c.png"
    _assert_png(path)
    losses, metrics = drawn["c.png"].axes
    assert [line.get_label() for line in losses.lines] == ["train_loss", "val_loss"]
    auroc = _line(metrics, "val_auroc")
    assert auroc.get_xdata().tolist() == [1, 3] and auroc.get_ydata().tolist() == [0.6, 0.8]


def test_training_curves_with_nothing_to_plot(drawn, tmp_path):
    plot_curves([], ["val_auroc"], tmp_path / "empty.png")
    plot_curves([{"epoch": 1}], ["train_loss"], tmp_path / "missing.png")
    for name in ("empty.png", "missing.png"):
        ax = drawn[name].axes[0]
        assert not ax.lines and [t.get_text() for t in ax.texts] == ["no values to plot"]


def test_plot_errors(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        plot_confusion(np.zeros((2, 3)), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="shapes"):
        plot_roc([0, 1, 1], [0.2, 0.4], tmp_path / "x.png")
    with pytest.raises(ValueError, match="0/1 labels"):
        plot_pr([0, 2], [0.2, 0.4], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
