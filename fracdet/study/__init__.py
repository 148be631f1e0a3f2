"""Studies on real data: ``fracdet run configs/fracatlas.yaml`` (convert, train, audit, one results
page)."""

from fracdet.study.config import StudyConfig
from fracdet.study.results import StudySummary
from fracdet.study.run import run_study

__all__ = ["StudyConfig", "StudySummary", "run_study"]
