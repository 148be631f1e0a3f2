"""Batch folder inference with both tracks: inputs, decoding, journal (resume), run, merge.

``predict_folder`` runs one (shard of a) folder; ``merge_outputs`` joins shards. Sharding,
the resume journal and the merge checks are the project's generic :mod:`fracdet.jobs`;
``parse_shard`` and ``shard_items`` are re-exported here for the callers that knew them as
predict's.
"""

from fracdet.jobs import parse_shard, shard_items
from fracdet.predict.config import MergeSummary, PredictConfig, PredictSummary
from fracdet.predict.inputs import list_inputs
from fracdet.predict.merge import merge_outputs
from fracdet.predict.run import predict_folder

__all__ = [
    "PredictConfig",
    "PredictSummary",
    "MergeSummary",
    "predict_folder",
    "merge_outputs",
    "list_inputs",
    "parse_shard",
    "shard_items",
]
