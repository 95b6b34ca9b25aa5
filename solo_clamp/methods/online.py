"""The online evaluation of solo-learn's ``BaseMethod.training_step``, for the methods that
forward their views themselves (CLAMP's joint forward, ManifoldCLR's pair).

solo-learn's step forwards each large crop through ``base_training_step`` and then trains the
online classifier and feeds the kNN on the large crops' features; a method whose forward is its
own calls :func:`online_evaluation` with those features instead of copying that part.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from solo.methods.base import BaseMethod
from solo.utils.metrics import accuracy_at_k


def online_evaluation(
    method: BaseMethod, large_feats: Sequence[torch.Tensor], targets: torch.Tensor
) -> torch.Tensor:
    """Trains ``method``'s online classifier on the detached backbone features of every large
    crop, logs ``train_class_loss``, ``train_acc1`` and ``train_acc5`` as solo-learn does, and
    feeds the labelled features to its kNN when ``knn_eval`` is on.

    Args:
        method: the method (its ``classifier``, ``knn_eval``, ``knn`` and ``log_dict``).
        large_feats: one ``[B, F]`` tensor per large crop.
        targets: the ``[B]`` labels of the batch (-1: unlabelled).

    Returns:
        The classifier's cross-entropy over all large crops (one mean, unlabelled rows left
        out), to add to the method's loss.
    """
    feats = torch.cat(list(large_feats)).detach()
    all_targets = targets.repeat(len(large_feats))
    logits = method.classifier(feats)
    class_loss = F.cross_entropy(logits, all_targets, ignore_index=-1)
    acc1, acc5 = accuracy_at_k(logits, all_targets, top_k=(1, min(5, logits.size(1))))
    method.log_dict(
        {"train_class_loss": class_loss, "train_acc1": acc1, "train_acc5": acc5},
        on_epoch=True,
        sync_dist=True,
    )
    if method.knn_eval:
        labelled = all_targets != -1
        method.knn(train_features=feats[labelled], train_targets=all_targets[labelled])
    return class_loss
