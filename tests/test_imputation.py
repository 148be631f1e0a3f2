"""ROAD imputation as fracdet runs it: the library's values, seeded, only the removed pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from fracdet.explain.imputation import impute


def test_a_linear_ramp_is_filled_back_exactly_without_noise():
    # each removed pixel is the weighted mean of its neighbours: a plane solves that exactly
    ramp = torch.linspace(0, 1, 16).repeat(16, 1)[None, None]
    remove = np.zeros((1, 16, 16), dtype=bool)
    remove[0, 5:9, 6:11] = True
    filled = impute(ramp, remove, noise=0.0)
    assert torch.allclose(filled, ramp, atol=1e-5)


def test_it_equals_the_library_and_is_seeded():
    images = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    remove = np.zeros((2, 12, 12), dtype=bool)
    remove[:, 3:7, 2:9] = True
    torch.manual_seed(5)
    ours = impute(images, remove, seed=3)
    again = impute(images, remove, seed=3)
    assert torch.equal(ours, again)  # torch's global state does not matter
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)  # the second image's seed
        reference = NoisyLinearImputer()(images[1], torch.as_tensor(~remove[1]).float())
    assert torch.allclose(ours[1], reference.clamp(0, 1))
    assert torch.equal(
        ours[:, :, ~torch.as_tensor(remove[0])], images[:, :, ~torch.as_tensor(remove[0])]
    )
    assert not torch.equal(impute(images, remove, seed=4), ours)


def test_nothing_removed_is_the_image_itself_and_bad_shapes_are_refused():
    images = torch.rand(1, 3, 8, 8)
    assert torch.equal(impute(images, np.zeros((1, 8, 8), dtype=bool)), images)
    with pytest.raises(ValueError, match=r"remove \(B, H, W\)"):
        impute(images, np.zeros((8, 8), dtype=bool))
