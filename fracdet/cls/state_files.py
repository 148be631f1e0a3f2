"""Weights as data: state dicts read from files without unpickling code, fitted and checked.

Below :mod:`fracdet.cls.model` and the RobustBench backbones so both (and ``fracdet.mae``)
read weights the same way without importing each other; :func:`hub_reachable` is checked
before any download so an offline user waits seconds, not minutes.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

from fracdet.errors import ConfigError

__all__ = ["hub_reachable", "load_state_dict_file", "state_misfit"]


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether the weight hub answers; checked first so offline users wait seconds, not minutes."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a torch file, never unpickling code.

    ``torch.load(weights_only=True)`` refuses anything but tensors and plain containers,
    which is what invariant 3 asks for. timm/Lightning wrappers (``state_dict``, ``model``)
    are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("weights file not found", path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - safetensors/torch raise many types for a bad file
        text = str(exc)
        if (
            "Weights only load failed" in text
        ):  # torch refused an object; its own advice (unpickle in full) is not ours
            what = (
                "an Ultralytics detector, not classifier weights"
                if "ultralytics" in text
                else "Python objects besides tensors, and unpickling them could run code"
            )
            raise ConfigError(
                f"refused: {what}; give a .safetensors file or a plain state dict of tensors", path
            ) from exc
        first_line = (text.strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"not a readable state dict ({type(exc).__name__}: {first_line})", path
        ) from exc
    model = state.get("model") if isinstance(state, dict) else None
    if isinstance(model, torch.nn.Module) and type(model).__module__.startswith("ultralytics"):
        # once Ultralytics has loaded a model in this process it has registered its classes as
        # torch's safe globals (process-wide), so weights_only no longer refuses its .pt files
        raise ConfigError(
            "refused: an Ultralytics detector, not classifier weights; give a .safetensors file "
            "or a plain state dict of tensors",
            path,
        )
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError("not a state dict of tensors", path)
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}


def state_misfit(
    own: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    *,
    ignored: set[str] | frozenset[str] = frozenset(),
) -> str:
    """What keeps ``state`` from loading into a model whose state is ``own`` ("" when it fits):
    missing keys (other than ``ignored``), unexpected keys, the first shape mismatch."""
    missing = sorted(set(own) - set(state) - set(ignored))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    return "; ".join(
        part
        for part in (
            f"missing {len(missing)} keys (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})" if unexpected else "",
            (
                f"shape mismatch at {mismatched[0]}: file {tuple(state[mismatched[0]].shape)} vs "
                f"model {tuple(own[mismatched[0]].shape)}"
            )
            if mismatched
            else "",
        )
        if part
    )
