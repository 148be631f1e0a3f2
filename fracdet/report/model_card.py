"""Model cards: ``MODEL_CARD.md`` + ``model_card.json`` beside a model's weights.

Every model fracdet trains, imports or exports carries a card that says what it is, where its
weights started, what data taught it, how it scored on test data (with CIs), what the latest
audit found, what it is for and under which licences. The JSON is the record; the Markdown is
rendered from it (Hugging Face style, YAML front matter), so the two never disagree.

Schema (``fracdet-model-card/1``): the dataclasses below *are* the schema. pydantic validates a
card against them on every read (:func:`read_model_card`) and generates the JSON Schema
(:func:`json_schema`; committed as ``docs/model_card.schema.json``, a test keeps it current).
Top-level keys:

- ``schema`` (the version tag), ``fracdet_version``, ``created``, ``updated`` (UTC ISO 8601);
- ``model`` (:class:`ModelSection`): kind, name, architecture, framework, files with sha256,
  the input contract (:class:`InputContract`: size, resize, channels, mean/std and where the
  normalisation happens), class names and the fractured class's index, output, threshold,
  temperature;
- ``weights_origin`` (:class:`WeightsOrigin`): ``random``, ``package`` (name, version,
  sha256), ``hub``, ``file`` (sha256), ``robustbench`` or ``unknown``;
- ``data`` (:class:`DataSection` or null): dataset, licence, manifest, hash, split sizes and
  class balance per split;
- ``training`` (:class:`TrainingSection` or null): command, config, seed, epochs, the
  validation numbers, versions;
- ``evaluations``: split name -> :class:`Evaluation` (the latest ``eval-cls``/``eval-det`` of
  that split: metrics with 95% CIs and where the report is);
- ``audit`` (:class:`AuditSection` or null): the latest audit of this model;
- ``exports``: :class:`Export` entries (ONNX and other formats with their parity check);
- ``licences`` (:class:`Licences`), ``intended_use``, ``limitations``.

A new key in a later version bumps the tag; readers refuse a tag they do not know.

API for the commands (everything a command knows goes in; the card module never loads a
model):

- ``write_model_card(folder, card)``: write both files atomically (JSON first);
- ``read_model_card(folder)``: the validated card, or a one-line ``ConfigError``;
- ``update_model_card(folder, create=..., weights=ModelFile(...), audit=..., evaluations=...)``:
  read-modify-write; ``create()`` builds the card when there is none (an old checkpoint
  folder) or when the card describes other weights; ``evaluations`` merge by split and
  ``exports`` by file, other sections replace;
- ``try_update_model_card(...)``: the same, but a folder that cannot be written (read-only) or
  a card that cannot be read only logs a warning: an evaluation or an audit never fails
  because of a card.

Builders that know the tracks live with them: :mod:`fracdet.cls.card`
(``card_from_classifier_checkpoint``, ``record_classifier_evaluation``),
:mod:`fracdet.det.card` (``card_from_detector_weights``, ``record_detector_evaluation``),
:mod:`fracdet.audit.card` (``update_audited_cards``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fracdet import __version__
from fracdet.errors import ConfigError, FracdetError
from fracdet.fsutil import atomic_write_text, sha256_file
from fracdet.report.tables import MISSING, ci_cell, format_value, markdown_table, number_cell

__all__ = [
    "SCHEMA_VERSION",
    "CARD_JSON",
    "CARD_MD",
    "INTENDED_USE",
    "LIMITATIONS",
    "Estimate",
    "ModelFile",
    "InputContract",
    "ModelSection",
    "WeightsOrigin",
    "DataSection",
    "TrainingSection",
    "Evaluation",
    "MethodLocalisation",
    "AuditSection",
    "Export",
    "Licences",
    "ModelCard",
    "estimate",
    "model_file",
    "now",
    "json_schema",
    "card_to_dict",
    "card_from_dict",
    "render_markdown",
    "write_model_card",
    "read_model_card",
    "update_model_card",
    "try_update_model_card",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "fracdet-model-card/1"
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"

INTENDED_USE = (
    "Research on bone-fracture radiographs: measuring whether a model finds fractures, and "
    "whether it does so for the right reason (fracdet's audit). Not for diagnosis, triage or "
    "any decision about a patient."
)
LIMITATIONS = (
    "Research software, not a medical device: not cleared or approved by any regulator "
    "(FDA, CE/MDR or other), and never validated for clinical use.",
    "Numbers hold for the data it was tested on; another hospital, scanner, body part or "
    "population can behave differently (check with eval-cls / eval-det and audit on your data).",
    "Test metrics on small test sets have wide confidence intervals; read the CI, not the point.",
    "Attributions and robustness numbers describe this model under the audit's settings "
    "(attack, ε, methods); a passed audit is not proof of correct reasoning.",
)


# --- the schema -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% CI (``[low, high]``) and the count behind it, each optional."""

    value: float | None
    ci95: tuple[float, float] | None = None
    n: int | None = None


@dataclass(frozen=True)
class ModelFile:
    """A file of the model, identified by content. ``role``: weights, metadata, export."""

    name: str
    sha256: str
    role: str = "weights"


@dataclass(frozen=True)
class InputContract:
    """What the model expects: pixels in [0, 1] resized to ``image_size`` by ``resize``."""

    image_size: int
    resize: str  # letterbox (aspect kept, padded) | stretch
    channels: int = 3
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalisation: str = "inside the model: it takes pixels in [0, 1]"


@dataclass(frozen=True)
class ModelSection:
    """What the model is."""

    kind: Literal["classifier", "detector"]
    name: str
    architecture: str
    framework: str  # timm, robustbench, torchvision, torchscript, ultralytics, onnx
    files: tuple[ModelFile, ...]
    input: InputContract
    classes: tuple[str, ...]
    fractured_index: int | None  # the index of the fractured class among ``classes``
    output: str
    threshold: float | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class WeightsOrigin:
    """Where the weights started before fracdet trained (or imported) them."""

    source: Literal["random", "package", "hub", "file", "robustbench", "unknown"]
    name: str | None = None
    package: str | None = None
    version: str | None = None
    file: str | None = None
    sha256: str | None = None
    licence: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    """The data that trained the model."""

    dataset: str
    licence: str
    note: str = ""
    folder: str | None = None
    manifest: str | None = None
    data_hash: str | None = None
    split_sizes: dict[str, int] = field(default_factory=dict)
    class_balance: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSection:
    """How it was trained: the command, its full config, and the validation numbers."""

    command: str
    config: dict[str, Any]
    seed: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    validation: dict[str, float | None] = field(default_factory=dict)
    report: str | None = None
    versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """The latest evaluation on one split: headline metrics with CIs and where the report is."""

    split: str
    command: str
    date: str
    n_images: int | None
    metrics: dict[str, Estimate]
    report: str | None = None
    data_hash: str | None = None
    ci_method: str | None = None
    note: str = ""


@dataclass(frozen=True)
class MethodLocalisation:
    """One attribution method: coverage of the fracture boxes, its random baseline, sanity."""

    method: str
    coverage_clean: Estimate
    coverage_attacked: Estimate
    random_baseline: float | None
    sanity: Literal["pass", "fail", "not run"]


@dataclass(frozen=True)
class AuditSection:
    """What the latest ``fracdet audit`` of this model found."""

    date: str
    report: str
    verdict: str  # the audit's one-phrase headline for this model
    answer: str  # the audit's answer (every audited model)
    n_images: int
    data_hash: str | None = None
    role: Literal["classifier", "detector"] = "classifier"
    attack: str | None = None
    clean_accuracy: Estimate | None = None
    attacked_accuracy: Estimate | None = None
    flip_rate: Estimate | None = None
    attack_trusted: bool | None = None  # None: the attack checks did not run
    attack_checks_failed: tuple[str, ...] = ()
    coverage_percentile: float | None = None
    localisation: tuple[MethodLocalisation, ...] = ()
    sanity_passed: tuple[str, ...] | None = None  # None: the sanity check did not run
    sanity_failed: tuple[str, ...] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Export:
    """The model in another format (ONNX...), with its parity against the PyTorch model."""

    format: str
    file: str
    sha256: str
    date: str
    details: dict[str, Any] = field(default_factory=dict)  # opset, max abs difference, tolerance


@dataclass(frozen=True)
class Licences:
    """The licences a user of these weights must respect: the weights', the data's, the code's."""

    weights: str
    data: str
    code: str = "Apache-2.0 (fracdet)"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelCard:
    """One model's card (schema ``fracdet-model-card/1``)."""

    model: ModelSection
    weights_origin: WeightsOrigin
    licences: Licences
    data: DataSection | None = None
    training: TrainingSection | None = None
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    audit: AuditSection | None = None
    exports: tuple[Export, ...] = ()
    intended_use: str = INTENDED_USE
    limitations: tuple[str, ...] = LIMITATIONS
    schema: Literal["fracdet-model-card/1"] = SCHEMA_VERSION
    fracdet_version: str = __version__
    created: str = ""
    updated: str = ""


# --- small helpers the builders share ---------------------------------------------------------


def now() -> str:
    """UTC time to the second, ISO 8601: when a card or one of its sections was written."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def estimate(value: Any, ci95: Sequence[Any] | None = None, n: Any = None) -> Estimate:
    """An :class:`Estimate` from loose numbers: nan and missing become ``None``."""
    bounds = None
    if ci95 is not None and len(ci95) >= 2:
        low, high = _finite(ci95[0]), _finite(ci95[1])
        bounds = None if low is None or high is None else (low, high)
    return Estimate(_finite(value), bounds, None if n is None else int(n))


def model_file(path: Path, role: str = "weights") -> ModelFile:
    """A file of the model with its sha256."""
    return ModelFile(Path(path).name, sha256_file(Path(path)), role)


# --- JSON: validated by pydantic against the dataclasses ---------------------------------------


def _adapter():
    from pydantic import TypeAdapter  # MIT; validates stdlib dataclasses and writes JSON Schema

    return TypeAdapter(ModelCard)


def json_schema() -> dict[str, Any]:
    """The card's JSON Schema (draft 2020-12), generated from the dataclasses."""
    schema = _adapter().json_schema(mode="serialization")
    schema["$id"] = SCHEMA_VERSION
    schema["title"] = "fracdet model card"
    return schema


def card_to_dict(card: ModelCard) -> dict[str, Any]:
    """The card as JSON-ready data (tuples become lists; nan never appears)."""
    return _adapter().dump_python(card, mode="json")


def card_from_dict(doc: Any, source: Path | None = None) -> ModelCard:
    """A card from JSON data, validated; one clear :class:`ConfigError` when it does not fit."""
    from pydantic import ValidationError

    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_VERSION:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise ConfigError(
            f"not a {SCHEMA_VERSION} model card (schema: {found!r})", source or CARD_JSON
        )
    try:
        return _adapter().validate_python(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"model card does not follow {SCHEMA_VERSION}: {where}: {first['msg']} "
            f"({exc.error_count()} problem(s))",
            source or CARD_JSON,
        ) from None


# --- Markdown -------------------------------------------------------------------------------


def _est(entry: Estimate | None, digits: int = 3) -> str:
    if entry is None:
        return MISSING
    return ci_cell(entry.value, entry.ci95, digits)


def _front_matter(card: ModelCard) -> str:
    import yaml

    m = card.model
    meta = {
        "library_name": "fracdet",
        "pipeline_tag": "image-classification" if m.kind == "classifier" else "object-detection",
        "tags": ["fracdet", "radiograph", "bone-fracture", m.framework],
        "license": _hf_licence(card.licences.weights),
        "datasets": [card.data.dataset] if card.data else [],
        "model_card_schema": card.schema,
        "fracdet_version": card.fracdet_version,
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _model_md(card: ModelCard) -> list[str]:
    m, i = card.model, card.model.input
    fractured = (
        f"{m.classes[m.fractured_index]} (index {m.fractured_index})"
        if m.fractured_index is not None
        else "none of the classes is named fractured"
    )
    rows = {
        "kind": m.kind,
        "architecture": m.architecture,
        "framework": m.framework,
        "classes": ", ".join(m.classes),
        "fractured class": fractured,
        "output": m.output,
        "decision threshold": m.threshold,
        "temperature": m.temperature,
    }
    contract = {
        "image size": f"{i.image_size} px",
        "resize": i.resize,
        "channels": i.channels,
        "mean": i.mean,
        "std": i.std,
        "normalisation": i.normalisation,
    }
    return [
        "## Model",
        "",
        markdown_table({k: v for k, v in rows.items() if v is not None}),
        "",
        "### Input contract",
        "",
        markdown_table(contract),
        "",
    ]


def _origin_md(card: ModelCard) -> list[str]:
    o = card.weights_origin
    words = {
        "random": "random initialisation (trained from scratch)",
        "package": f"the pip package {o.package} {o.version or ''}".rstrip(),
        "hub": f"hub weights {o.name or ''}".rstrip(),
        "file": f"the file {o.file}",
        "robustbench": f"the RobustBench zoo ({o.name or ''})",
        "unknown": "not recorded",
    }[o.source]
    rows = {
        "name": o.name,
        "package": o.package,
        "version": o.version,
        "file": o.file,
        "sha256": o.sha256,
        "licence": o.licence,
        **{k: v for k, v in o.details.items() if not isinstance(v, (dict, list))},
    }
    table = markdown_table({k: v for k, v in rows.items() if v is not None})
    return ["## Where the weights started", "", f"From {words}.", "", table, ""]


def _data_md(card: ModelCard) -> list[str]:
    d = card.data
    if d is None:
        return ["## Training data", "", "Not recorded (fracdet did not train this model).", ""]
    lines = [
        "## Training data",
        "",
        f"**{d.dataset}**, licence **{d.licence}**." + (f" {d.note}." if d.note else ""),
        "",
    ]
    facts = {"manifest": d.manifest or d.folder, "data hash (sha256)": d.data_hash}
    lines += [markdown_table({k: v for k, v in facts.items() if v}), ""]
    if d.split_sizes:
        classes = list(dict.fromkeys(c for per in d.class_balance.values() for c in per))
        rows = [
            {"split": s, "images": n, **{c: d.class_balance.get(s, {}).get(c) for c in classes}}
            for s, n in d.split_sizes.items()
        ]
        lines += [markdown_table(rows), ""]
    return lines


# the validation numbers the Markdown shows (the JSON keeps every one the trainer recorded)
_VALIDATION_SHOWN = ("auroc", "accuracy", "sensitivity", "specificity", "n", "mAP50", "mAP50-95")
# licences the Hugging Face front matter knows by id; anything else is "other"
_HF_LICENCES = {
    "Apache-2.0": "apache-2.0",
    "AGPL-3.0": "agpl-3.0",
    "MIT": "mit",
    "CC BY 4.0": "cc-by-4.0",
}


def _hf_licence(text: str) -> str:
    return next((hf for ours, hf in _HF_LICENCES.items() if text.startswith(ours)), "other")


def _training_md(card: ModelCard) -> list[str]:
    t = card.training
    if t is None:
        return []
    keep = (
        "backbone", "mode", "epochs", "batch_size", "lr", "optimizer", "loss", "imbalance",
        "adv", "image_size", "imgsz", "batch", "lr0", "model", "pretrained", "resize",
    )  # fmt: skip
    config = {k: t.config[k] for k in keep if k in t.config}
    shown = [k for k in t.validation if k.removeprefix("val_") in _VALIDATION_SHOWN]
    facts = {
        "command": f"fracdet {t.command}",
        "seed": t.seed,
        "epochs run": t.epochs_run,
        "best epoch": t.best_epoch,
        **{f"validation {k.removeprefix('val_')}": t.validation[k] for k in shown},
    }
    return [
        "## Training",
        "",
        markdown_table({k: v for k, v in facts.items() if v is not None}),
        "",
        "Main settings (the full config is in `model_card.json`):",
        "",
        markdown_table(config),
        "",
    ]


def _evaluations_md(card: ModelCard) -> list[str]:
    lines = ["## Test metrics", ""]
    if not card.evaluations:
        return lines + [
            "No evaluation recorded yet: run `fracdet eval-cls` (classifiers) or "
            "`fracdet eval-det` (detectors) on a test split; it adds its numbers here.",
            "",
        ]
    order = sorted(card.evaluations, key=lambda s: (s != "test", s))
    for split in order:
        ev = card.evaluations[split]
        lines += [
            f"### Split `{split}` ({ev.n_images} images; `fracdet {ev.command}`, {ev.date})",
            "",
            markdown_table(
                [{"metric": k, "value [95% CI]": _est(v)} for k, v in ev.metrics.items()]
            ),
            "",
        ]
        tail = [x for x in (ev.ci_method and f"CIs: {ev.ci_method}.", ev.note) if x]
        tail.append(f"Report: `{ev.report}`." if ev.report else "")
        lines += [" ".join(x for x in tail if x), ""]
    return lines


def _audit_md(card: ModelCard) -> list[str]:
    a = card.audit
    if a is None:
        return [
            "## Audit",
            "",
            "Not audited yet: `fracdet audit "
            + ("--cls THIS_FOLDER" if card.model.kind == "classifier" else "--det THIS_FILE")
            + " ...` adds its verdict here.",
            "",
        ]
    lines = [
        "## Audit",
        "",
        f"Latest `fracdet audit` ({a.date}, {a.n_images} images, report `{a.report}`):",
        "",
        f"> {a.verdict}",
        "",
    ]
    if a.role == "classifier":
        trust = {None: "not checked", True: "passed", False: "FAILED"}[a.attack_trusted]
        if a.attack_checks_failed:
            trust += f" ({', '.join(a.attack_checks_failed)})"
        rows = {
            "attack": a.attack,
            "clean accuracy": _est(a.clean_accuracy),
            "attacked accuracy": _est(a.attacked_accuracy),
            "predictions flipped": _est(a.flip_rate),
            "attack checks": trust,
        }
        lines += ["### Robustness", "", markdown_table(rows), ""]
        if a.localisation:
            p = a.coverage_percentile
            lines += [
                f"### Localisation: coverage@{format_value(p)} of the fracture boxes",
                "",
                markdown_table(
                    [
                        {
                            "method": m.method,
                            "clean [95% CI]": _est(m.coverage_clean),
                            "attacked [95% CI]": _est(m.coverage_attacked),
                            "random map": number_cell(m.random_baseline),
                            "sanity check": m.sanity,
                        }
                        for m in a.localisation
                    ]
                ),
                "",
                "A method that fails the randomisation sanity check says nothing about the "
                "model; its coverage is not evidence.",
                "",
            ]
    elif a.details:
        lines += [markdown_table({k: v for k, v in a.details.items()}), ""]
    if a.answer:
        lines += ["The audit's answer (every model it audited): " + a.answer, ""]
    return lines


def _exports_md(card: ModelCard) -> list[str]:
    if not card.exports:
        return []
    rows = [
        {"format": e.format, "file": e.file, "sha256": e.sha256[:16] + "…", "date": e.date}
        | {k: v for k, v in e.details.items() if not isinstance(v, (dict, list))}
        for e in card.exports
    ]
    return ["## Exports", "", markdown_table(rows), ""]


def render_markdown(card: ModelCard) -> str:
    """``MODEL_CARD.md``: front matter, then one section per part of the card."""
    m = card.model
    files = markdown_table([{"file": f.name, "role": f.role, "sha256": f.sha256} for f in m.files])
    lic = card.licences
    lines = [
        _front_matter(card),
        f"# Model card: {m.name}",
        "",
        f"A fracdet {m.kind} ({m.architecture}) for bone-fracture radiographs. "
        f"Card schema `{card.schema}`, written by fracdet {card.fracdet_version}; created "
        f"{card.created}, updated {card.updated}. The numbers below are read from "
        "`model_card.json`.",
        "",
        *_model_md(card),
        *_origin_md(card),
        *_data_md(card),
        *_training_md(card),
        *_evaluations_md(card),
        *_audit_md(card),
        *_exports_md(card),
        "## Intended use",
        "",
        card.intended_use,
        "",
        "## Limitations",
        "",
        *[f"- {item}" for item in card.limitations],
        "",
        "## Licences",
        "",
        markdown_table({"weights": lic.weights, "data": lic.data, "code": lic.code}),
        "",
        *[f"- {note}" for note in lic.notes],
        *([""] if lic.notes else []),
        "## Files",
        "",
        files,
        "",
    ]
    return "\n".join(lines)


# --- reading and writing ----------------------------------------------------------------------


def write_model_card(folder: Path, card: ModelCard) -> Path:
    """Write ``model_card.json`` then ``MODEL_CARD.md`` into ``folder``, each atomically.

    ``created`` is kept when set, ``updated`` is now. Returns the JSON's path.
    """
    folder = Path(folder)
    stamp = now()
    card = dataclasses.replace(card, created=card.created or stamp, updated=stamp)
    doc = card_to_dict(card)
    path = atomic_write_text(folder / CARD_JSON, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    atomic_write_text(folder / CARD_MD, render_markdown(card))
    return path


def read_model_card(folder: Path) -> ModelCard:
    """The card in ``folder``, validated; a :class:`ConfigError` names the file otherwise."""
    path = Path(folder) / CARD_JSON
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("no model card here", path) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model card is not readable JSON ({exc})", path) from None
    return card_from_dict(doc, path)


def _merged(card: ModelCard, sections: Mapping[str, Any]) -> ModelCard:
    names = {f.name for f in dataclasses.fields(ModelCard)}
    unknown = set(sections) - names
    if unknown:
        raise TypeError(f"not a model card section: {', '.join(sorted(unknown))}")
    changes = dict(sections)
    if "evaluations" in changes:  # the latest evaluation per split
        changes["evaluations"] = {**card.evaluations, **changes["evaluations"]}
    if "exports" in changes:  # the latest export per file
        new = {e.file: e for e in changes["exports"]}
        changes["exports"] = tuple(e for e in card.exports if e.file not in new) + tuple(
            new.values()
        )
    return dataclasses.replace(card, **changes)


def update_model_card(
    folder: Path,
    *,
    create: Callable[[], ModelCard] | None = None,
    weights: ModelFile | None = None,
    **sections: Any,
) -> ModelCard:
    """Read the card in ``folder``, change ``sections``, write it back (atomically).

    Without a card, ``create()`` builds one (an old checkpoint folder). ``weights`` names the
    file the update is about: when the card lists a file of that name with another sha256,
    the card described earlier weights and is rebuilt by ``create()`` (its old evaluations
    and audit belonged to those weights); when the card lists no file of that name it
    describes another model of the folder and the update is refused (ConfigError).
    """
    folder = Path(folder)
    if (folder / CARD_JSON).is_file():
        card = read_model_card(folder)
        if weights is not None:
            same_name = [f for f in card.model.files if f.name == weights.name]
            if not same_name:
                described = ", ".join(f.name for f in card.model.files if f.role == "weights")
                raise ConfigError(
                    f"the model card here describes {described}, not {weights.name}", folder
                )
            if same_name[0].sha256 != weights.sha256:
                if create is None:
                    raise ConfigError(f"the model card describes other {weights.name}", folder)
                logger.info("%s changed since its card was written: card rebuilt", weights.name)
                card = create()
    elif create is not None:
        card = create()
    else:
        raise ConfigError("no model card to update", folder / CARD_JSON)
    card = _merged(card, sections)
    write_model_card(folder, card)
    return card


def try_update_model_card(folder: Path, **kwargs: Any) -> ModelCard | None:
    """:func:`update_model_card`, but a problem (read-only folder, unreadable card, another
    model's card) is a warning and ``None``: the command that calls it goes on."""
    try:
        return update_model_card(folder, **kwargs)
    except (OSError, FracdetError) as exc:
        logger.warning("model card in %s not updated: %s", folder, exc)
        return None
