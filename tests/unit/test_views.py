"""Crops with known identities land in their own image's sub-manifold."""

from __future__ import annotations

import pytest
import torch

from solo_clamp.losses.clamp import clamp_loss_func
from solo_clamp.views import (
    forward_by_resolution,
    group_by_resolution,
    large_crop_indices,
    view_major,
    views_of_image,
)


def tagged_crops(batch: int, sizes: list[int]) -> list[torch.Tensor]:
    """Crop k of image b is filled with the value 1000 * b + k (its identity)."""
    crops = []
    for k, size in enumerate(sizes):
        ids = torch.tensor([1000.0 * b + k for b in range(batch)])
        crops.append(ids[:, None, None, None].expand(batch, 3, size, size).clone())
    return crops


def read_identity(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """A 'network' that returns each input's identity and records its batch size."""
    ident = images.mean(dim=(1, 2, 3))
    calls.append(images.shape[0])
    return {"feats": ident[:, None].repeat(1, 4), "z": ident[:, None].repeat(1, 2)}


calls: list[int] = []


def test_grouping_by_resolution_keeps_crop_order():
    crops = tagged_crops(3, [32, 32, 16, 32, 16])
    assert group_by_resolution(crops) == [[0, 1, 3], [2, 4]]
    assert large_crop_indices(crops) == [0, 1, 3]


def test_every_embedding_lands_in_its_own_images_submanifold():
    batch, sizes = 5, [32, 32, 32, 32, 16, 16]  # 4 large + 2 small crops = 6 views
    crops = tagged_crops(batch, sizes)
    calls.clear()
    outputs = forward_by_resolution(read_identity, crops)
    assert calls == [4 * batch, 2 * batch]  # one joint forward per resolution
    z = view_major([out["z"] for out in outputs])
    assert z.shape == (len(sizes) * batch, 2)
    for image in range(batch):
        rows = views_of_image(z, len(sizes), image)[:, 0]
        assert rows.tolist() == [1000.0 * image + k for k in range(len(sizes))]
    # row v * B + b is view v of image b
    for v in range(len(sizes)):
        for b in range(batch):
            assert z[v * batch + b, 0].item() == 1000.0 * b + v


def test_joint_forward_equals_per_crop_forward_for_a_batch_independent_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(8))
    crops = [torch.randn(6, 3, 8, 8) for _ in range(4)]
    joint = forward_by_resolution(lambda x: {"z": net(x)}, crops)
    for crop, out in zip(crops, joint):
        torch.testing.assert_close(out["z"], net(crop))
    z = view_major([out["z"] for out in joint])
    assert torch.isfinite(clamp_loss_func(z, num_views=4, rs=7.0))


def test_crops_with_different_batch_sizes_are_rejected():
    with pytest.raises(ValueError, match="same number of images"):
        forward_by_resolution(read_identity, [torch.zeros(4, 3, 8, 8), torch.zeros(3, 3, 8, 8)])
