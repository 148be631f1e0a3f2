"""The audit's answer: three sentences at most, only methods that pass the sanity check, never
an average over methods, the attack checks' warning, the causal test."""

from __future__ import annotations

import re

from fracdet.audit.answer import answer, headline


def _metrics(checks: dict | None = None) -> dict:
    cov = {
        "standard": {"SM": 0.91, "GC": 0.63},
        "shortcut": {"SM": 0.27, "GC": 0.18},
    }
    return {
        "models": ["standard", "shortcut"],
        "methods": ["SM", "GC"],
        "percentiles": [25.0],
        "focus_percentile": 25.0,
        "robustness": {
            "standard": {"clean_accuracy": 0.906, "pgd_accuracy": 0.017},
            "shortcut": {"clean_accuracy": 1.0, "pgd_accuracy": 0.439},
        },
        "localization": {
            m: {f"{c}/clean": {"coverage@25": {"mean": v}} for c, v in per.items()}
            for m, per in cov.items()
        },
        "provenance": {"config": {"attack": "pgd", "eps": "4/255"}},
        "checks": checks or {},
    }


def _sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text))


def test_only_methods_that_pass_the_sanity_check_are_used_and_the_rest_named():
    sanity = {m: {"passed": ["GC"], "failed": ["SM"]} for m in ("standard", "shortcut")}
    text = answer(_metrics({"sanity": sanity}))
    assert "standard GC 0.63; shortcut GC 0.18" in text
    assert "SM 0.91" not in text and "SM 0.27" not in text  # Saliency failed: numbers not used
    assert "(failing it: SM)" in text and "average" not in text
    assert "standard 0.91 → 0.02; shortcut 1.00 → 0.44" in text and "ℓ∞ PGD at ε = 4/255" in text
    assert _sentences(text) == 2
    assert headline(_metrics({"sanity": sanity}))[0] == (
        "standard: acc 0.906 -> attacked 0.017, coverage@25 GC 0.63 (failing the sanity check: SM)"
    )


def test_without_the_sanity_check_every_method_is_listed_and_said_unchecked():
    text = answer(_metrics())
    assert "per method, not sanity-checked: standard SM 0.91 GC 0.63; shortcut SM 0.27 GC 0.18" in (
        text
    )


def test_a_model_with_no_passing_method_says_so():
    sanity = {
        "standard": {"passed": ["GC"], "failed": ["SM"]},
        "shortcut": {"passed": [], "failed": ["SM", "GC"]},
    }
    assert "shortcut none passes" in answer(_metrics({"sanity": sanity}))


def test_failed_attack_checks_turn_the_number_into_a_warning():
    attacks = {
        "standard": {"trusted": True, "failed": []},
        "shortcut": {"trusted": False, "failed": ["black-box beats white-box", "zero gradients"]},
    }
    text = answer(_metrics({"attacks": attacks}))
    assert (
        "the attack checks fail for shortcut (black-box beats white-box, zero gradients), so "
        "those numbers are not evidence of robustness" in text
    )
    assert "standard (" not in text


def test_the_causal_sentence_gives_each_model_and_the_named_regions():
    def entry(diff, lo, hi, p, flipped=0.0):
        return {
            "n": 16,
            "flipped": flipped,
            "difference": {"mean_diff": diff, "ci_low": lo, "ci_high": hi, "wilcoxon_p": p},
        }

    causal = {
        "standard": {"regions": {"fracture boxes": entry(0.125, 0.068, 0.189, 1.6e-6)}},
        "shortcut": {
            "regions": {
                "fracture boxes": entry(0.0, None, None, None),
                "shortcut marker": entry(1.0, 0.9, 1.0, 0.001, flipped=1.0),
            }
        },
    }
    sanity = {m: {"passed": ["GC"], "failed": ["SM"]} for m in ("standard", "shortcut")}
    text = answer(_metrics({"causal": causal, "sanity": sanity}))
    assert (
        "by standard 0.125 [0.068–0.189] (p 1.6e-06); shortcut 0.000, while removing the shortcut "
        "marker flips the calls of shortcut 100%." in text
    )
    assert _sentences(text) == 3
