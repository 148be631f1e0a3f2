"""Hugging Face's ViT-MAE behind the toolkit's pixel-space contract.

:class:`PixelMAE` takes radiographs in [0, 1], one grey channel or three, and normalises
inside with the ImageNet statistics ``facebook/vit-mae-*`` were trained with, exactly as
:class:`fracdet.cls.model.PixelClassifier` does: the encoder sees the same inputs while it is
pretrained here and later as a classifier backbone.

Two deliberate departures from the Hugging Face defaults, both harmless to loaded weights:

* LayerNorm ``eps`` is 1e-6, the value of Meta's MAE code and of timm, not the port's 1e-12,
  so that the exported encoder computes the same function in timm (tested to 1e-5).
* The fixed sin-cos position embeddings (encoder and decoder) are computed for the model's
  own patch grid instead of being loaded: they are not learned, so a checkpoint trained at
  224 px continues at any other size without interpolation.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fracdet.cls.model import IMAGENET_MEAN, IMAGENET_STD
from fracdet.cls.state_files import state_misfit
from fracdet.errors import ConfigError

__all__ = [
    "ARCHS",
    "HUB_IDS",
    "LAYER_NORM_EPS",
    "FIXED_KEYS",
    "PixelMAE",
    "transformers_module",
    "mae_config",
    "new_mae",
    "load_mae_state",
    "set_position_embeddings",
    "sincos_position_embedding",
    "canonical_key",
]

logger = logging.getLogger(__name__)

_DECODER = {
    "decoder_hidden_size": 512,
    "decoder_num_hidden_layers": 8,
    "decoder_num_attention_heads": 16,
    "decoder_intermediate_size": 2048,
}
#: The three published MAE sizes (Meta's ViT-B/16, L/16, H/14 with the paper's 8-block decoder).
ARCHS: dict[str, dict[str, int]] = {
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "patch_size": 16,
        **_DECODER,
    },
    "large": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "patch_size": 16,
        **_DECODER,
    },
    "huge": {
        "hidden_size": 1280,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "intermediate_size": 5120,
        "patch_size": 14,
        **_DECODER,
    },
}
#: Where ``--pretrained`` starts each size from.
HUB_IDS: dict[str, str] = {
    "base": "facebook/vit-mae-base",
    "large": "facebook/vit-mae-large",
    "huge": "facebook/vit-mae-huge",
}
LAYER_NORM_EPS = 1e-6
#: Buffers-in-all-but-name: the sin-cos position embeddings, recomputed, never loaded.
FIXED_KEYS = ("vit.embeddings.position_embeddings", "decoder.decoder_pos_embed")
#: transformers 5 renamed ViT-MAE's modules; state dicts of either naming are read through
#: :func:`canonical_key` (the new names), whichever transformers is installed.
LEGACY_NAMES = (
    ("encoder.layer.", "layers."),
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),  # before the MLP's output.dense
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
)
#: ViTMAEConfig fields fracdet sets itself: model_args may not change them.
_OWN_FIELDS = {
    "image_size": "--image-size",
    "patch_size": "--patch-size",
    "mask_ratio": "--mask-ratio",
    "num_channels": None,
    "layer_norm_eps": None,
}


def transformers_module():
    """``transformers``, or a clear error saying how to install it."""
    try:
        import transformers
    except (
        ImportError
    ) as exc:  # pragma: no cover - it is a dependency; a broken env is the only way here
        raise ConfigError(
            f"MAE pretraining needs Hugging Face transformers ({exc}); pip install "
            "'transformers>=4.44'"
        ) from exc
    return transformers


class PixelMAE(nn.Module):
    """``ViTMAEForPreTraining`` taking ``(B, 1|3, S, S)`` pixels in [0, 1] (S: the model's image
    size).

    ``backbone`` is the Hugging Face model (the name the classification track's resume code
    expects). The reconstruction target, as in Hugging Face, is the normalised image.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        check_range: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.check_range = check_range

    @property
    def config(self):  # -> transformers.ViTMAEConfig
        return self.backbone.config

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    @property
    def patch_size(self) -> int:
        return int(self.config.patch_size)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def mask_ratio(self) -> float:
        return float(self.config.mask_ratio)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Check the pixel-space input and return the three-channel normalised image."""
        if pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (B, 1|3, H, W), got {tuple(pixels.shape)}")
        if tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"expected {self.image_size}x{self.image_size} images, got "
                f"{pixels.shape[-2]}x{pixels.shape[-1]}"
            )
        if self.check_range:
            low, high = torch.aminmax(pixels.detach())
            if low < -1e-3 or high > 1 + 1e-3:
                raise ValueError(
                    f"expected pixels in [0, 1], got [{float(low):.3g}, {float(high):.3g}]: "
                    "the model normalises inside"
                )
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        return (pixels - self.mean) / self.std

    # returns a transformers ViTMAEForPreTrainingOutput
    def forward(self, pixels: torch.Tensor, noise: torch.Tensor | None = None):
        """Masked reconstruction: ``loss`` (MSE on masked patches), ``logits``, ``mask`` (1 =
        masked).

        ``noise`` ``(B, num_patches)`` fixes which patches are masked (the lowest
        ``1 - mask_ratio`` fraction is kept); ``None`` draws them from torch's generator.
        """
        return self.backbone(pixel_values=self.normalise(pixels), noise=noise)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encoder tokens ``(B, 1 + num_patches, D)`` of the whole image, after the final LayerNorm.

        What a classifier backbone sees: nothing masked and patches in raster order. Hugging
        Face shuffles patches by ``argsort(noise)`` even when nothing is masked, so increasing
        noise is passed to keep the order.
        """
        batch = pixels.shape[0]
        order = torch.arange(self.num_patches, device=pixels.device, dtype=torch.float32).expand(
            batch, -1
        )
        with self._mask_ratio(0.0):
            return self.backbone.vit(
                pixel_values=self.normalise(pixels), noise=order
            ).last_hidden_state

    def to_pixels(self, logits: torch.Tensor) -> torch.Tensor:
        """Reconstruction logits ``(B, N, p*p*3)`` as grey pixels ``(B, 1, S, S)`` (not clipped)."""
        image = self.backbone.unpatchify(logits.float(), (self.image_size, self.image_size))
        return (image * self.std + self.mean).mean(dim=1, keepdim=True)

    def patch_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A patch mask ``(B, N)`` as a pixel mask ``(B, 1, S, S)`` (1 where the patch was
        masked).
        """
        grid = self.image_size // self.patch_size
        mask = mask.float().view(-1, 1, grid, grid)
        return mask.repeat_interleave(self.patch_size, dim=2).repeat_interleave(
            self.patch_size, dim=3
        )

    @contextlib.contextmanager
    def _mask_ratio(self, ratio: float) -> Iterator[None]:
        config = self.backbone.vit.embeddings.config  # read at each forward by random_masking
        saved = config.mask_ratio
        config.mask_ratio = ratio
        try:
            yield
        finally:
            config.mask_ratio = saved


def mae_config(
    base: Mapping[str, Any],
    *,
    image_size: int,
    patch_size: int,
    mask_ratio: float,
    model_args: Mapping[str, Any] | None = None,
):
    """A ``ViTMAEConfig`` from ``base`` (a preset or a checkpoint's config) and fracdet's settings.

    ``model_args`` overrides other ViTMAEConfig fields (e.g. a tiny model for tests); an
    unknown field is an error naming the close matches, because ViTMAEConfig itself would
    accept a typo silently.
    """
    transformers = transformers_module()
    known = set(transformers.ViTMAEConfig().to_dict())
    for key in model_args or {}:
        if key in _OWN_FIELDS:
            option = _OWN_FIELDS[key]
            raise ConfigError(
                f"model_args cannot set {key!r}: "
                + (f"use {option}" if option else "fracdet fixes it (3 channels, eps 1e-6)")
            )
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            raise ConfigError(
                f"model_args: {key!r} is not a ViTMAEConfig field"
                + (f"; did you mean {', '.join(close)}?" if close else "")
            )
    if not 0.0 <= mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if patch_size < 1 or image_size % patch_size or image_size // patch_size < 2:
        raise ConfigError(
            f"image_size {image_size} must be a multiple of patch_size {patch_size} (at least "
            "2 patches a side)"
        )
    values = {**base, **(model_args or {})}
    values.update(
        image_size=image_size,
        patch_size=patch_size,
        mask_ratio=mask_ratio,
        num_channels=3,
        layer_norm_eps=LAYER_NORM_EPS,
    )
    hidden, heads = int(values.get("hidden_size", 768)), int(values.get("num_attention_heads", 12))
    if hidden % heads or hidden % 4:
        raise ConfigError(
            f"hidden_size {hidden} must be a multiple of num_attention_heads {heads} and of 4 "
            "(2-D sin-cos embeddings)"
        )
    for key in ("model_type", "transformers_version", "architectures"):
        values.pop(key, None)
    return transformers.ViTMAEConfig(**values)


def new_mae(config) -> PixelMAE:
    """A freshly initialised model (torch's global generator: seed first) with its fixed
    embeddings set.
    """
    transformers = transformers_module()
    model = transformers.ViTMAEForPreTraining(config)
    set_position_embeddings(model)
    return PixelMAE(model)


def canonical_key(key: str) -> str:
    """A ViT-MAE state-dict key in transformers 5 naming
    (``vit.layers.0.attention.q_proj.weight``).
    """
    for old, new in LEGACY_NAMES:
        key = key.replace(old, new)
    return key


def sincos_position_embedding(dim: int, grid: int) -> torch.Tensor:
    """Meta's MAE 2-D sin-cos table ``(1 + grid**2, dim)``, class row zero, in the layout its
    weights use.

    Each half of ``dim`` encodes one axis with ``[sin | cos]`` at frequencies
    ``10000 ** (-k / (dim / 4))``; the first half encodes the column (w), the second the row
    (h): the original code's variable names say the opposite, and every published checkpoint
    (and Hugging Face, which rotates its own table to match) follows the code.
    """
    if dim % 4:
        raise ConfigError(
            f"hidden sizes must be multiples of 4 for 2-D sin-cos embeddings, got {dim}"
        )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64),
        torch.arange(grid, dtype=torch.float64),
        indexing="ij",
    )
    w, h = cols.flatten().outer(omega), rows.flatten().outer(omega)
    table = torch.cat([w.sin(), w.cos(), h.sin(), h.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).float()


@torch.no_grad()
def set_position_embeddings(model: nn.Module) -> None:
    """Write the fixed 2-D sin-cos position embeddings (class token: zeros) for the model's grid."""
    grid = int(model.config.image_size) // int(model.config.patch_size)
    for param in (model.vit.embeddings.position_embeddings, model.decoder.decoder_pos_embed):
        param.copy_(sincos_position_embedding(param.shape[-1], grid).to(param.dtype).unsqueeze(0))


def load_mae_state(model: PixelMAE, state: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """Load a ``ViTMAEForPreTraining`` state dict strictly, the fixed position embeddings excepted.

    A mismatch names what differs in one line (a checkpoint of another size or patch size).
    """
    own = model.backbone.state_dict()
    own_names = {canonical_key(k): k for k in own}
    state = {
        own_names.get(canonical_key(k), k): v for k, v in state.items()
    }  # either naming, as installed
    state = {k: v for k, v in state.items() if k not in FIXED_KEYS}
    detail = state_misfit(own, state, ignored=set(FIXED_KEYS))
    if detail:
        raise ConfigError(f"weights do not fit this ViT-MAE ({detail})", path)
    model.backbone.load_state_dict(state, strict=False)
    set_position_embeddings(model.backbone)
