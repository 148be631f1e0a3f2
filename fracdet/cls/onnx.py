"""Classifiers as ONNX: exported with the pixel-space contract, run through onnxruntime.

The exported graph is the whole :class:`~fracdet.cls.model.PixelClassifier`: normalisation
(and any input quantisation) inside, one grey channel in [0, 1] at the checkpoint's size, a
dynamic batch axis, logits out. The checkpoint's JSON metadata travels inside the ``.onnx``
file (``metadata_props``), so the one file is a complete classifier: ``predict`` and
``eval-cls`` read image size, resize, class names, threshold and temperature from it.

:class:`OnnxClassifier` is an ``nn.Module`` whose forward runs onnxruntime, so every caller
that only needs logits (predict, eval-cls) takes it where it takes a PyTorch classifier.
Gradients do not flow through it: commands that attack or attribute refuse it
(:data:`NEEDS_PYTORCH`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fracdet.errors import ConfigError

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "META_KEY",
    "MODEL_FILE",
    "NEEDS_PYTORCH",
    "OUTPUT_NAME",
    "OnnxClassifier",
    "export_classifier_onnx",
    "find_onnx_file",
    "is_onnx_model",
    "onnx_metadata",
]

logger = logging.getLogger(__name__)

#: The opset both tracks export with (ONNX Runtime runs it on every provider; the legacy
#: TorchScript exporter supports it for every layer fracdet's models use).
DEFAULT_OPSET = 17
#: ``metadata_props`` key holding the classifier checkpoint's JSON metadata.
META_KEY = "fracdet_classifier"
#: The file name of an exported model inside its export folder.
MODEL_FILE = "model.onnx"
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"
#: What a command that needs gradients says when it is handed an ONNX model.
NEEDS_PYTORCH = "attributions and attacks need a PyTorch model; use the checkpoint"


def find_onnx_file(path: str | Path) -> Path | None:
    """The ``.onnx`` file ``path`` names: itself, or a folder's ``model.onnx`` (an export folder
    without safetensors weights); ``None`` when ``path`` is not an ONNX model.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return path
    if path.is_dir() and (path / MODEL_FILE).is_file() and not any(path.glob("*.safetensors")):
        return path / MODEL_FILE
    return None


def is_onnx_model(path: str | Path) -> bool:
    """True when ``path`` is an ONNX model file or an export folder holding one."""
    return find_onnx_file(path) is not None


def export_classifier_onnx(
    model: nn.Module,
    path: Path,
    *,
    image_size: int,
    meta_json: str,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` (a pixel-space classifier in eval mode) to ``path`` as ONNX.

    Input ``pixels``: ``(batch, 1, image_size, image_size)`` float32 in [0, 1] (grey, as
    fracdet decodes radiographs; the model expands to three channels inside). Output
    ``logits``: ``(batch,)`` for a binary classifier, ``(batch, classes)`` otherwise.
    The legacy TorchScript exporter (``dynamo=False``) is used: it needs nothing beyond
    ``onnx`` and works offline. ``meta_json`` goes into the file's metadata under
    :data:`META_KEY`.
    """
    import warnings

    import onnx

    model = model.eval().cpu()
    example = torch.rand(2, 1, image_size, image_size, generator=torch.Generator().manual_seed(0))
    binary = model(example).ndim == 1
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    path = Path(path)
    with warnings.catch_warnings():
        # the legacy exporter's deprecation notice and tracer warnings about shape checks
        # (constant for a fixed channel count and size, which the contract fixes)
        warnings.simplefilter("ignore")
        if any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
            # an imported TorchScript network: the exporter's own tracer refuses to enter a
            # loaded ScriptModule, a trace of the whole model taken first exports as is
            model = torch.jit.trace(model, (example,), check_trace=False)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
        )
    proto = onnx.load(str(path))
    for key, value in {
        META_KEY: meta_json,
        "input_range": "[0, 1]",
        "input_layout": f"(batch, 1, {image_size}, {image_size}) grey, normalisation inside",
        "output": "one fracture logit per image" if binary else "one logit per class",
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "fracdet"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def onnx_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's ``metadata_props``, or a :class:`ConfigError` when it is not ONNX at all."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError as exc:
        raise ConfigError("ONNX model not found", path) from exc
    except Exception as exc:  # protobuf raises DecodeError and friends for damaged bytes
        raise ConfigError(
            f"not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]})", path
        ) from exc
    return {p.key: p.value for p in proto.metadata_props}


def _providers(device: torch.device) -> list[str]:
    """onnxruntime's CUDA provider where the device is a GPU and the installed build has it."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxClassifier(nn.Module):
    """A classifier exported by ``fracdet export``, run by onnxruntime behind ``nn.Module``'s call.

    ``forward`` takes what :class:`~fracdet.cls.model.PixelClassifier` takes (``(B, 1, H, W)``
    in [0, 1], checked the same way) and returns its logits as a float32 tensor on the input's
    device, without gradients.
    """

    #: attacks and attributions check this before differentiating
    differentiable = False

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu") -> None:
        super().__init__()
        path = Path(path)
        found = find_onnx_file(path)
        if found is None:
            raise ConfigError("not an ONNX model (.onnx file or an export folder)", path)
        self.path = found
        self.metadata = onnx_metadata(found)
        if META_KEY not in self.metadata:
            raise ConfigError(
                "an ONNX model without fracdet's classifier metadata: export a fracdet "
                "classifier with `fracdet export RUN` (a detector .onnx goes to --det)",
                found,
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph fusions
        # as many threads as PyTorch uses (OMP_NUM_THREADS, torch.set_num_threads), not every core
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(
                str(found), options, providers=_providers(torch.device(device))
            )
        except Exception as exc:  # onnxruntime raises its own pybind error types
            raise ConfigError(
                f"onnxruntime cannot load this model ({str(exc).splitlines()[0][:160]})", found
            ) from exc
        self.input_name = self.session.get_inputs()[0].name

    @property
    def meta_json(self) -> str:
        """The classifier checkpoint's JSON metadata stored in the file."""
        return self.metadata[META_KEY]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.ndim != 4 or pixels.shape[1] != 1:
            raise ValueError(
                f"expected grey images of shape (B, 1, H, W), got {tuple(pixels.shape)}"
            )
        array = pixels.detach().float().cpu().numpy()
        low, high = float(array.min(initial=0.0)), float(array.max(initial=1.0))
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"expected pixels in [0, 1], got [{low:.3g}, {high:.3g}]: the model normalises "
                "inside"
            )
        (logits,) = self.session.run(None, {self.input_name: np.ascontiguousarray(array)})
        return torch.from_numpy(logits).to(pixels.device)

    def extra_repr(self) -> str:
        return f"path={self.path}"
