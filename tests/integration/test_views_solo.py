"""solo-learn's real crop pipeline + DataLoader collate + CLAMP's grouping: every embedding
lands in its own image's sub-manifold, large and small crops alike."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import DataLoader, Dataset


class TaggedImages(Dataset):
    """Item i is the integer i (its identity) with label i % 3."""

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return self.transform(index), index % 3


class Tag:
    """A 'transform' producing a crop whose pixels encode (image, pipeline, crop counter)."""

    def __init__(self, pipeline: int, size: int):
        self.pipeline, self.size, self.counter = pipeline, size, itertools.count()

    def __call__(self, image_id: int) -> torch.Tensor:
        crop = next(self.counter) % 2  # two crops per image from each pipeline
        value = 1000.0 * image_id + 10.0 * self.pipeline + crop
        return torch.full((3, self.size, self.size), value)


def test_solo_pipeline_crops_are_grouped_by_image(clamp_cfg_factory, clamp_method):
    from solo.data.pretrain_dataloader import (
        FullTransformPipeline,
        NCropAugmentation,
        dataset_with_index,
    )

    pipelines = [
        NCropAugmentation(Tag(0, 32), 2),
        NCropAugmentation(Tag(1, 32), 2),
        NCropAugmentation(Tag(2, 16), 2),
    ]
    dataset = dataset_with_index(TaggedImages)()
    dataset.transform = FullTransformPipeline(pipelines)
    batch = next(
        iter(
            DataLoader(
                dataset, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(0)
            )
        )
    )
    indexes = batch[0]

    cfg = clamp_cfg_factory(num_views=6, batch_size=6)
    cfg.data.num_large_crops, cfg.data.num_small_crops = 4, 2
    cfg.augmentations = [
        {"crop_size": 32, "num_crops": 2},
        {"crop_size": 32, "num_crops": 2},
        {"crop_size": 16, "num_crops": 2},
    ]
    model = clamp_method(cfg)
    model.log = model.log_dict = lambda *a, **k: None

    def read_identity(images):
        ident = images.mean(dim=(1, 2, 3))
        return {"feats": ident[:, None].repeat(1, model.features_dim), "z": ident[:, None]}

    model._views_forward = read_identity
    model.classifier = torch.nn.Linear(model.features_dim, 3)
    _, per_view = model._joint_training_step(batch)
    z = torch.cat(per_view).reshape(6, 6)  # [V, B]
    expected_views = [10.0 * p + c for p in range(3) for c in range(2)]
    for b, image in enumerate(indexes.tolist()):
        assert z[:, b].tolist() == [1000.0 * image + v for v in expected_views]
