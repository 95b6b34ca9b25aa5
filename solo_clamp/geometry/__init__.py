"""Geometry of CLAMP (or ManifoldCLR, or other solo-learn) embeddings: image sub-manifolds,
classes, and the ``solo-clamp geometry`` report.

The measures are pure torch (no solo-learn import) and are exported here:

* :mod:`~solo_clamp.geometry.measures`: sub-manifolds of ``z [V, B, D]`` (views, images,
  dim): centroids, radii, neighbour counts, centroid distances and similarities, principal
  axes, own-centroid fraction, within-image variance;
* :mod:`~solo_clamp.geometry.features`: a feature set ``[N, F]`` and its classes:
  participation ratio, class centroids, radii and separation;
* :mod:`~solo_clamp.geometry.pairs`: pair distances from Gram matrices, in row blocks;
* :mod:`~solo_clamp.geometry.transport`: the held-out check of learned transport operators
  (ManifoldCLR): the posterior's ``c`` beside maps that need no learned operator, error and
  angular ratios, coefficient usage; :mod:`~solo_clamp.geometry.operators`: the generators'
  spectrum and norms, and the nearest-neighbour check of prior samples against noise of equal
  norm.
* :mod:`~solo_clamp.geometry.projection`: encoder against projector on the views of held-out
  images (invariance, effective rank, participation ratio, tangent share), one function:
  :func:`~solo_clamp.geometry.projection.encoder_projector_geometry`.

The report's pieces are imported on their own (torchvision, matplotlib, scikit-learn):
:mod:`~solo_clamp.geometry.views` (augmented views at a strength ``s`` and their embeddings),
:mod:`~solo_clamp.geometry.figures` (matplotlib, t-SNE), :mod:`~solo_clamp.geometry.embedding`
(the two passes over an ImageFolder) and :mod:`~solo_clamp.geometry.stats`. The report itself,
which loads a run and builds its method through solo-learn, is a tool above the measures (layer
5 of docs/architecture.md): :mod:`solo_clamp.geometry.report` and its held-out transport check,
:mod:`solo_clamp.geometry.report_transport`.
"""

from __future__ import annotations

from solo_clamp.geometry.features import (
    class_centroids,
    class_radii,
    effective_rank,
    mean_class_separation,
    participation_ratio,
)
from solo_clamp.geometry.measures import (
    NEIGHBOUR_FACTOR,
    centroid_distances,
    centroid_similarity,
    neighbour_counts,
    orientation_similarity,
    own_centroid_fraction,
    prepare_views,
    principal_axes,
    submanifold_centroids,
    submanifold_radii,
    submanifold_traces,
    within_image_variance_fraction,
)
from solo_clamp.geometry.pairs import upper_pairs
from solo_clamp.geometry.projection import (
    encoder_projector_geometry,
    tangent_share,
    within_image_share,
)

__all__ = [
    "NEIGHBOUR_FACTOR",
    "centroid_distances",
    "centroid_similarity",
    "class_centroids",
    "class_radii",
    "effective_rank",
    "encoder_projector_geometry",
    "mean_class_separation",
    "neighbour_counts",
    "orientation_similarity",
    "own_centroid_fraction",
    "participation_ratio",
    "prepare_views",
    "principal_axes",
    "submanifold_centroids",
    "submanifold_radii",
    "submanifold_traces",
    "tangent_share",
    "upper_pairs",
    "within_image_share",
    "within_image_variance_fraction",
]
