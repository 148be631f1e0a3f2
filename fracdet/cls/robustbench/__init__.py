"""RobustBench backbones for the classifier track: ``robustbench:DATASET/THREAT/NAME``.

The robust-transfer study froze RobustBench's adversarially trained CIFAR-10 WideResNets and
trained a linear head on radiographs. Here any model of the RobustBench zoo becomes a
backbone of :class:`~fracdet.cls.model.PixelClassifier`:

* **weights** come from the zoo (``--pretrained``: RobustBench's ``model_dir``, ``./models``
  by default, downloaded into it when online), from a local checkpoint (``--weights FILE``, a
  ``.pt`` as the zoo ships it or a ``.safetensors`` state dict; ``--weights DIR``, a
  RobustBench ``model_dir``), or nowhere (random initialisation, for tests and smoke runs);
* **normalisation** is the model's own: RobustBench feeds every model [0, 1] pixels and
  models that expect normalised inputs carry their mean/std inside. fracdet's wrapper
  therefore adds none (mean 0, std 1), and what the model does is recorded in the
  checkpoint JSON (``backbone_info``);
* **the head** is replaced by a new linear layer on the model's pooled features. The zoo
  models pool with fixed windows sized for their native input (``avg_pool2d(out, 8)`` at
  32 px), which breaks at 224 px; a probe at the native size finds the last feature map and
  checks that a global average of it is exactly what the original head reads, so the new
  head sees the same features at the native size and well-defined ones at any other.

``robustbench`` is an optional dependency (``pip install fracdet[robustbench]``, then
``pip install --no-deps robustbench==1.1.1``: its own pins would downgrade timm; see the
README); nothing here imports it until a RobustBench backbone is asked for, and then only its
model zoo and checkpoint loader (:mod:`.zoo`).

The package: ``spec`` (names), ``zoo`` (importing the zoo, loading weights), ``probe`` (where
the head and features are, the model's own normalisation), ``backbone`` (the new head).
"""

from __future__ import annotations

from fracdet.cls.robustbench.backbone import RobustBenchBackbone, create_robustbench_backbone
from fracdet.cls.robustbench.spec import (
    DATASETS,
    PREFIX,
    THREATS,
    RobustBenchSpec,
    is_robustbench,
    parse_spec,
    robustbench_spec,
)
from fracdet.cls.robustbench.zoo import DEFAULT_MODEL_DIR

__all__ = [
    "PREFIX",
    "DATASETS",
    "THREATS",
    "DEFAULT_MODEL_DIR",
    "RobustBenchSpec",
    "RobustBenchBackbone",
    "is_robustbench",
    "robustbench_spec",
    "parse_spec",
    "create_robustbench_backbone",
]
