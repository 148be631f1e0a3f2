"""The audit: classifiers clean and attacked, their attributions, detector boxes and ground truth, fused into tables."""
