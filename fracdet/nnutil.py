"""Small ``torch.nn`` helpers shared by layers that must not import each other.

Module surgery (swapping one registered submodule for another) is needed by the explainers
(DeepLIFT's rule-friendly copy) and by the RobustBench backbones (cutting off a zoo head):
one helper here, at the bottom, so neither reaches into the other.
"""

from __future__ import annotations

from torch import nn

__all__ = ["replace_module"]


def replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``old`` is registered under ``root``.

    A shared module has several names (``named_modules(remove_duplicate=False)`` lists each),
    and every one of them is replaced; ``root`` itself is never replaced.
    """
    for name, module in list(root.named_modules(remove_duplicate=False)):
        if module is old and name:
            parent, _, child = name.rpartition(".")
            setattr(root.get_submodule(parent), child, new)
