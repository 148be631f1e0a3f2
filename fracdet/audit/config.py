"""Options of ``fracdet audit``: one frozen dataclass, defaults in ``configs/audit.yaml``.

Every option that changes a number is here and is written into the report, so two audits
can be compared knowing what differed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fracdet.errors import ConfigError
from fracdet.explain.base import CHANNEL_AGGREGATIONS
from fracdet.robust.attack_checks import DEFAULT_CHECK_EPS
from fracdet.robust.ensemble import ATTACK_BUDGETS, ENSEMBLE_ATTACKS

__all__ = ["AuditConfig", "CONDITIONS", "TARGETS"]

#: Inputs every attribution is computed on: the clean image and its PGD counterpart.
CONDITIONS = ("clean", "pgd")
#: ``fracture``: explain the fracture class on every image (default); ``predicted``: the
#: class the model predicts, as the robust-transfer study did.
TARGETS = ("fracture", "predicted")


@dataclass(frozen=True)
class AuditConfig:
    """What to audit (classifiers, optional detector, data) and how (attack, attributions, metrics).

    ``dataset`` is a folder written by ``fracdet convert`` (its ``manifest.csv`` gives labels
    and ground-truth boxes), a manifest file, or a plain folder of images (then only the
    parts that need no ground truth run: prediction stability under attack and
    classifier/detector agreement).
    """

    config_section: ClassVar[str] = "audit"  # its section in a preset (configs/r2i.yaml)

    dataset: Path
    classifiers: tuple[Path, ...] = ()
    names: tuple[str, ...] = ()
    detector: Path | None = None
    split: str = "test"
    output: Path = Path("reports/audit")
    # the attack (fracdet.robust.attacks)
    attack: str = "pgd"
    eps: str | float = "4/255"
    steps: int = 10
    step_size: str | float = "1/255"
    restarts: int = 1
    random_start: bool = True
    eps_space: str = "pixel"
    # attack: autoattack (fracdet.robust.ensemble): its budget and attacks
    attack_budget: str = "quick"
    attack_components: tuple[str, ...] = ENSEMBLE_ATTACKS
    # attributions (fracdet.explain)
    methods: tuple[str, ...] = ("saliency", "deeplift", "integrated_gradients", "gradcam")
    target: str = "fracture"
    channels: str = "abs_max"
    baseline: float = 0.0
    ig_steps: int = 32
    save_maps: bool = True
    # localization metrics (fracdet.explain.localization)
    percentiles: tuple[float, ...] = (5.0, 25.0, 50.0)
    pointing_tolerance: int = 15
    # detector
    det_imgsz: int = 640
    det_conf: float = 0.25
    det_iou: float = 0.7
    trust_pickle: bool = False
    # checks of the audit's own instruments (fracdet.audit.checks), on a fixed subset: the
    # first check_images fractured images with boxes and as many without. detector_attack
    # runs only when a detector is given (a no-op without --det)
    checks: tuple[str, ...] = ("sanity", "faithfulness", "causal", "attacks", "detector_attack")
    check_images: int = 16
    # sanity (fracdet.audit.check_sanity): cascading randomisation on the first sanity_images
    # fractured images with boxes of the subset, at most sanity_steps randomised steps
    sanity_images: int = 8
    sanity_steps: int = 4
    # faithfulness (fracdet.audit.check_faithfulness): ROAD deletion curves on the subset's first
    # faithfulness_images fractured images with boxes, removing these shares of pixels (%)
    faithfulness_images: int = 8
    faithfulness_percentages: tuple[float, ...] = (20.0, 40.0, 60.0, 80.0)
    # the causal box test (fracdet.audit.check_causal): at most causal_images fractured images
    # of the subset (None: all), causal_controls matched control boxes each, and the named
    # regions of a CSV (image_id, region, x1, y1, x2, y2 in original pixels) removed too
    causal_images: int | None = None
    causal_controls: int = 4
    causal_regions: Path | None = None
    # detector_attack (fracdet.audit.check_detector_attack): white-box PGD on the detector
    # within the audit's ε and step size; "scores" (its fracture confidences) or "detection"
    # (Ultralytics' training loss against the boxes); boxes below the floor are left alone;
    # bootstrap replicates of its AUROC CIs (0: none), and of mAP's too when det_attack_map_ci
    # (pycocotools per replicate: about 20 s per input at the demo's scale)
    det_attack_steps: int = 10
    det_attack_loss: str = "scores"
    det_attack_floor: float = 0.001
    det_attack_boot: int = 200
    det_attack_map_ci: bool = False
    # the attacks check (fracdet.robust.attack_checks): its ε curve, ensemble budget and the
    # noise (share of the subset's images) a difference must exceed to warn
    attack_check_eps: tuple[str, ...] = DEFAULT_CHECK_EPS
    attack_check_budget: str = "quick"
    attack_check_tolerance: float = 0.05
    # the attacks check on the subset's first N fractured and N intact images (None: all)
    attack_check_images: int | None = None
    # statistics and figures
    group_by: tuple[
        str, ...
    ] = ()  # manifest columns to split the numbers by (hardware, body_part, ...)
    n_boot: int = 1000
    figure_samples: int = 4
    figure_worst: int = 2
    study_tables: bool = (
        False  # the report opens with the robust-transfer study's Table 1 and Table I
    )
    # the run
    max_images: int | None = None
    batch_size: int = 16
    workers: int = 2
    device: str | None = None
    precision: str = "fp32"
    seed: int = 0
    shard: str | None = None
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        from fracdet.explain.registry import METHODS

        unknown = [m for m in self.methods if m not in METHODS]
        checks = [
            (
                not unknown,
                f"unknown attribution method(s) {unknown}: choose from {', '.join(METHODS)}",
            ),
            (
                len(set(self.methods)) == len(self.methods),
                f"methods listed twice: {list(self.methods)}",
            ),
            (
                len(set(self.group_by)) == len(self.group_by),
                f"group_by lists a column twice: {list(self.group_by)}",
            ),
            (
                self.target in TARGETS,
                f"target must be one of {', '.join(TARGETS)}, got {self.target!r}",
            ),
            (
                self.channels in CHANNEL_AGGREGATIONS,
                f"channels must be one of {', '.join(CHANNEL_AGGREGATIONS)}, got {self.channels!r}",
            ),
            (
                0.0 <= self.baseline <= 1.0,
                f"baseline is a pixel value in [0, 1], got {self.baseline}",
            ),
            (self.ig_steps >= 1, f"ig_steps must be >= 1, got {self.ig_steps}"),
            (
                all(0 < p <= 100 for p in self.percentiles) and self.percentiles,
                f"percentiles must be in (0, 100], got {list(self.percentiles)}",
            ),
            (
                self.pointing_tolerance >= 0,
                f"pointing_tolerance must be >= 0 pixels, got {self.pointing_tolerance}",
            ),
            (self.det_imgsz >= 32, f"det_imgsz must be >= 32, got {self.det_imgsz}"),
            (0.0 <= self.det_conf <= 1.0, f"det_conf must be in [0, 1], got {self.det_conf}"),
            (0.0 < self.det_iou <= 1.0, f"det_iou must be in (0, 1], got {self.det_iou}"),
            (self.check_images >= 1, f"check_images must be >= 1, got {self.check_images}"),
            (self.sanity_images >= 1, f"sanity_images must be >= 1, got {self.sanity_images}"),
            (self.sanity_steps >= 1, f"sanity_steps must be >= 1, got {self.sanity_steps}"),
            (
                self.causal_images is None or self.causal_images >= 1,
                f"causal_images must be >= 1, got {self.causal_images}",
            ),
            (
                self.causal_controls >= 1,
                f"causal_controls must be >= 1, got {self.causal_controls}",
            ),
            (
                self.det_attack_steps >= 1,
                f"det_attack_steps must be >= 1, got {self.det_attack_steps}",
            ),
            (
                self.det_attack_loss in ("scores", "detection"),
                f"det_attack_loss must be scores or detection, got {self.det_attack_loss!r}",
            ),
            (
                0.0 <= self.det_attack_floor < 1.0,
                f"det_attack_floor must be in [0, 1), got {self.det_attack_floor}",
            ),
            (
                self.det_attack_boot == 0 or self.det_attack_boot >= 100,
                f"det_attack_boot must be 0 (no CIs) or >= 100, got {self.det_attack_boot}",
            ),
            (
                len(set(self.checks)) == len(self.checks),
                f"checks listed twice: {list(self.checks)}",
            ),
            (
                self.faithfulness_images >= 1,
                f"faithfulness_images must be >= 1, got {self.faithfulness_images}",
            ),
            (
                bool(self.faithfulness_percentages)
                and all(0 < p < 100 for p in self.faithfulness_percentages)
                and list(self.faithfulness_percentages)
                == sorted(set(self.faithfulness_percentages)),
                "faithfulness_percentages must increase within (0, 100), got "
                f"{list(self.faithfulness_percentages)}",
            ),
            (
                self.attack_check_budget in ATTACK_BUDGETS,
                f"attack_check_budget must be one of {', '.join(ATTACK_BUDGETS)}, "
                f"got {self.attack_check_budget!r}",
            ),
            (
                self.attack_check_images is None or self.attack_check_images >= 1,
                f"attack_check_images must be >= 1, got {self.attack_check_images}",
            ),
            (
                0 < self.attack_check_tolerance < 1,
                f"attack_check_tolerance must be in (0, 1), got {self.attack_check_tolerance}",
            ),
            (self.n_boot >= 100, f"n_boot must be >= 100, got {self.n_boot}"),
            (
                self.figure_samples >= 0 and self.figure_worst >= 0,
                "figure_samples and figure_worst must be >= 0",
            ),
            (
                self.max_images is None or self.max_images >= 1,
                f"max_images must be >= 1, got {self.max_images}",
            ),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (
                not (self.resume and self.overwrite),
                "--resume continues an output and --overwrite replaces it: pass one",
            ),
            (
                not self.names or len(self.names) == len(self.classifiers),
                f"{len(self.names)} names for {len(self.classifiers)} classifiers",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.attack_config()  # validates the attack options now, not after loading models
        self.attack_check_config()

    def attack_config(self):  # -> fracdet.robust.attacks.AttackConfig
        """The attack these options describe (ε given as "4/255" or 0.0157)."""
        from fracdet.robust.attacks import AttackConfig, parse_eps

        return AttackConfig(
            kind=self.attack,
            eps=parse_eps(self.eps),
            steps=self.steps,
            step_size=parse_eps(self.step_size),
            restarts=self.restarts,
            random_start=self.random_start,
            eps_space=self.eps_space,
            budget=self.attack_budget,
            components=self.attack_components,
        )

    def attack_check_config(self, attack=None):  # -> attack_checks.AttackCheckConfig
        """The attacks check's options. ``attack`` is a classifier's pixel-space attack (default:
        this config's); the check's ℓ∞ PGD takes its ε, steps and restarts, so the single-ε
        checks run at the audit's budget. An ℓ2 or zero budget has no ℓ∞ counterpart: the
        check then uses the default ℓ∞ PGD (4/255, 10 steps of 1/255)."""
        from dataclasses import replace

        from fracdet.robust.attack_checks import AttackCheckConfig, parse_check_eps
        from fracdet.robust.attacks import AttackConfig
        from fracdet.robust.ensemble import check_components

        # fracdet audits two-class models: refuse DLR and targeted attacks before any work
        check_components(self.attack_components, 2)
        attack = attack or replace(self.attack_config(), eps_space="pixel")
        linf = attack.kind != "pgd_l2" and attack.eps > 0
        pgd = replace(attack, kind="pgd") if linf else AttackConfig()
        return AttackCheckConfig(
            eps=parse_check_eps(self.attack_check_eps),
            pgd=pgd,
            budget=self.attack_check_budget,
            tolerance=self.attack_check_tolerance,
            seed=self.seed,
        )

    def check_models(self) -> None:
        """Run by :func:`~fracdet.audit.run.run_audit`: at least one classifier to audit."""
        if not self.classifiers:
            raise ConfigError("give at least one classifier to audit (--cls CKPT, repeatable)")
