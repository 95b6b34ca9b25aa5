"""How the crops of a solo-learn batch become CLAMP sub-manifolds.

solo-learn's ``FullTransformPipeline`` returns, for every image, the crops of each entry of
the ``augmentations:`` list in order, ``num_crops`` of each; the default collate turns this
into a list ``X`` of K tensors ``[B, C, H, W]``, where ``X[k][b]`` is crop k of image b.

CLAMP's convention (documented in the README):

* every crop of an image, large or small, is one view of that image's sub-manifold, so
  ``V = K = num_large_crops + num_small_crops``;
* view ``v`` is crop ``v`` in the order above (YAML order, ``num_crops`` of each);
* the loss receives the view-major matrix ``torch.cat([z_0, ..., z_{V-1}])`` of shape
  ``[V * B, D]``: row ``v * B + b`` is view ``v`` of image ``b``.

Crops of the same resolution are sent through the network as one batch (BatchNorm
statistics over all those views, as in the paper's code); crops of another resolution
(small crops) form their own batch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch


def count_views(cfg: Mapping[str, Any]) -> int:
    """V, the views of each sub-manifold, counted as solo-learn counts the crops.

    ``data.num_large_crops + data.num_small_crops`` where they are set (solo-learn's
    ``parse_cfg`` sets them, and its own method tests build cfgs with them alone); before
    ``parse_cfg``, the sum of ``augmentations[*].num_crops``.

    Raises:
        ValueError: both are given and disagree (the message names both).
    """
    data = cfg.get("data") or {}
    large, small = data.get("num_large_crops"), data.get("num_small_crops")
    augmentations = cfg.get("augmentations") or []
    from_augmentations = sum(int(aug.get("num_crops", 0)) for aug in augmentations)
    if large is None and small is None:
        return from_augmentations
    from_data = int(large or 0) + int(small or 0)
    if augmentations and from_data != from_augmentations:
        raise ValueError(
            f"data.num_large_crops + data.num_small_crops = {from_data} but the sum of "
            f"augmentations[*].num_crops is {from_augmentations}: the two counts of views per "
            "image must agree (solo-learn's parse_cfg sets the first from the second)."
        )
    return from_data


def group_by_resolution(crops: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of the crops that share a shape, groups in order of first appearance.

    Args:
        crops: K tensors ``[B, C, H, W]``.

    Returns:
        A list of groups, each a list of crop indices in increasing order.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, crop in enumerate(crops):
        groups.setdefault(tuple(crop.shape), []).append(index)
    return list(groups.values())


def large_crop_indices(crops: Sequence[torch.Tensor]) -> list[int]:
    """Indices of the large crops: those with the resolution of the first crop.

    This matches solo-learn's ``parse_cfg``, which counts as large every augmentation
    whose ``crop_size`` equals the first one's.
    """
    first = tuple(crops[0].shape[-2:])
    return [i for i, crop in enumerate(crops) if tuple(crop.shape[-2:]) == first]


def forward_by_resolution(
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    crops: Sequence[torch.Tensor],
) -> list[dict[str, torch.Tensor]]:
    """Runs ``forward`` once per resolution group and splits the outputs back per crop.

    Args:
        forward: maps ``[n * B, C, H, W]`` to a dict of tensors whose first dim is ``n * B``.
        crops: K tensors ``[B, C, H, W]`` (all with the same B).

    Returns:
        K dicts, the i-th holding the outputs of crop i (first dim B), in crop order.
    """
    batch = crops[0].shape[0]
    if any(crop.shape[0] != batch for crop in crops):
        sizes = [crop.shape[0] for crop in crops]
        raise ValueError(f"every crop must hold the same number of images, got {sizes}.")
    outputs: list[dict[str, torch.Tensor]] = [{} for _ in crops]
    for group in group_by_resolution(crops):
        joint = forward(torch.cat([crops[i] for i in group]))
        for key, value in joint.items():
            for index, chunk in zip(group, value.split(batch)):
                outputs[index][key] = chunk
    return outputs


def view_major(per_view: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stacks V tensors ``[B, D]`` into the loss's view-major ``[V * B, D]``."""
    return torch.cat(list(per_view))


def views_of_image(z: torch.Tensor, num_views: int, image: int) -> torch.Tensor:
    """The ``[V, D]`` rows of one image in a view-major ``[V * B, D]`` matrix."""
    return z.reshape(num_views, -1, z.shape[-1])[:, image]
