"""``fracdet audit``: is the classifier right for the right reason, and does it stay so under
attack?

Fuses both tracks: classifiers attacked with ℓ∞ PGD, their attributions (captum, Grad-CAM)
scored against ground-truth and detector boxes, the detector's mAP on clean and attacked
inputs, and paired statistics between classifiers.
"""

from fracdet.audit.config import AuditConfig
from fracdet.audit.result import AuditSummary
from fracdet.audit.run import merge_audits, run_audit

__all__ = ["AuditConfig", "AuditSummary", "run_audit", "merge_audits"]
