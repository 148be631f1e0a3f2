"""Leakage-free splits: stratified by label and body part, grouped by patient or series.

No library splits groups into train/val/test by fractions while stratifying
(scikit-learn's StratifiedGroupKFold makes k equal folds), so this is a small greedy
assignment: whole groups, largest first, each to the split furthest below its target.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from fracdet.data.formats import SPLITS, ImageRecord, Problem
from fracdet.errors import ConfigError

__all__ = [
    "SplitReport",
    "assign_splits",
    "apply_group_regex",
    "study_sample",
    "DEFAULT_FRACTIONS",
    "STUDY_FRACTIONS",
]

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
#: The robust-transfer study's classification split: 80/10/10, stratified.
STUDY_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


@dataclass
class SplitReport:
    """How the split was made and what it holds."""

    strategy: str
    fractions: dict[str, float]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    leaking_groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "fractions": self.fractions,
            "counts_per_split_and_class": self.counts,
            "groups_per_split": self.groups,
            "groups_in_more_than_one_official_split": self.leaking_groups,
        }


def apply_group_regex(records: Sequence[ImageRecord], pattern: str) -> list[ImageRecord]:
    """Group images by the first capture group of ``pattern`` in their id (e.g. a patient id)."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"--group-regex {pattern!r} is not a valid regular expression ({exc})"
        ) from exc
    out = []
    for record in records:
        match = regex.search(record.image_id)
        group = (match.group(1) if match.groups() else match.group(0)) if match else record.group
        out.append(replace(record, group=group))
    return out


def study_sample(
    records: Sequence[ImageRecord], *, negative_ratio: float = 1.0, seed: int = 0
) -> tuple[list[ImageRecord], dict[str, int | float]]:
    """The robust-transfer study's classification set: every fractured image and a seeded sample of
    the others.

    ``negative_ratio`` non-fractured images are drawn per fractured one (1.0: a balanced set,
    as FracAtlas' 717 fractured against 3366 intact images was); the draw is by image, and
    the kept records stay in their input order. Returns the kept records and the counts.
    """
    if not negative_ratio > 0:
        raise ConfigError(
            "negative_ratio must be > 0 (non-fractured images drawn per fractured one), got "
            f"{negative_ratio}"
        )
    positives = [k for k, r in enumerate(records) if r.label]
    negatives = [k for k, r in enumerate(records) if not r.label]
    wanted = min(len(negatives), round(negative_ratio * len(positives)))
    drawn = set(random.Random(seed).sample(negatives, wanted))
    kept = [r for k, r in enumerate(records) if r.label or k in drawn]
    counts = {
        "fractured": len(positives),
        "non_fractured_drawn": wanted,
        "non_fractured_available": len(negatives),
        "negative_ratio": negative_ratio,
    }
    return kept, counts


def _validate(fractions: Sequence[float]) -> dict[str, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(
            "split fractions must be three non-negative numbers summing to 1, got "
            f"{list(fractions)}"
        )
    return dict(zip(SPLITS, (float(f) for f in fractions), strict=True))


def assign_splits(
    records: Sequence[ImageRecord],
    *,
    fractions: Sequence[float] | None = None,
    seed: int = 0,
    use_official: bool = True,
    class_names: Sequence[str] = ("not_fractured", "fractured"),
) -> tuple[list[ImageRecord], SplitReport, list[Problem]]:
    """Give every record a split, keeping each group in one split.

    With ``use_official``, records that carry an official split keep it and pull the rest of
    their group along; the others are assigned greedily. ``fractions=None`` means: the
    proportions of the official split when there is one (so prevalence stays equal across
    splits), else 70/15/15.
    """
    official = {r.image_id: r.split for r in records if r.split in SPLITS} if use_official else {}
    if fractions is None:
        observed = Counter(official.values())
        fractions = [observed[s] / len(official) for s in SPLITS] if official else DEFAULT_FRACTIONS
    targets = _validate(fractions)

    members: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        members[record.group or record.image_id].append(record)

    split_of_group: dict[str, str] = {}
    leaking: list[str] = []
    for group, items in members.items():
        splits = Counter(official[r.image_id] for r in items if r.image_id in official)
        if splits:
            split_of_group[group] = splits.most_common(1)[0][0]
            if len(splits) > 1:
                leaking.append(group)

    def stratum(items: list[ImageRecord]) -> tuple[int, str]:
        return max(r.label for r in items), items[0].body_part

    wanted: dict[tuple[int, str], Counter] = defaultdict(Counter)
    have: dict[tuple[int, str], Counter] = defaultdict(Counter)
    for group, items in members.items():
        wanted[stratum(items)]["total"] += len(items)
        if group in split_of_group:
            have[stratum(items)][split_of_group[group]] += len(items)

    overall = Counter({s: sum(h[s] for h in have.values()) for s in SPLITS})
    free = [g for g in members if g not in split_of_group]
    random.Random(seed).shuffle(free)
    free.sort(key=lambda g: -len(members[g]))  # stable: big groups first, ties in seeded order
    for group in free:
        key = stratum(members[group])
        total = wanted[key]["total"]
        # Furthest below target in this stratum; ties (common in small strata) go to the
        # split furthest below target overall, so small splits are not starved.
        score = {
            s: (targets[s] * total - have[key][s], targets[s] * len(records) - overall[s])
            for s in SPLITS
            if targets[s] > 0
        }
        chosen = max(score, key=score.__getitem__)
        split_of_group[group] = chosen
        have[key][chosen] += len(members[group])
        overall[chosen] += len(members[group])

    assigned = [replace(r, split=split_of_group[r.group or r.image_id]) for r in records]
    report = SplitReport("official+grouped" if official else "grouped-stratified", targets)
    for split in SPLITS:
        in_split = [r for r in assigned if r.split == split]
        by_class = Counter(
            class_names[r.label] if r.label < len(class_names) else str(r.label) for r in in_split
        )
        report.counts[split] = {name: by_class.get(name, 0) for name in class_names}
        report.groups[split] = len({r.group or r.image_id for r in in_split})
    report.leaking_groups = sorted(leaking)
    problems = [
        Problem(
            group,
            "official_split_leak",
            "the official split puts images of this group in more than one split",
            f"whole group kept in {split_of_group[group]}",
        )
        for group in report.leaking_groups
    ]
    return assigned, report, problems
