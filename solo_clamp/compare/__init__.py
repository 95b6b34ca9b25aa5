"""CLAMP beside solo-learn's SimCLR, BYOL and VICReg: same data, backbone, views and budget.

One comparison is a YAML file (``scripts/compare/*.yaml``) that names the dataset, the
methods, their recipes (each method's standard hyper-parameters), the shared augmentation
sets, the budget(s), the epochs and the seeds. Every run is one solo-learn method class from
``solo.methods.METHODS``, built from a cfg in solo-learn's parsed layout and trained with a
Lightning ``Trainer``; then its frozen backbone is scored with solo-learn's weighted kNN and a
linear probe (``solo_clamp.evaluation``). Two floors are measured the same way: raw pixels and
the untrained backbone.

Budgets (``B`` images per step for every method, ``E`` = ``epochs``, ``S`` = steps per epoch):

* ``equal_epochs``: every method trains ``E·S`` optimiser steps (the literature's protocol);
  a method with ``V`` views sees ``V/2`` times the views of a 2-view method.
* ``equal_compute``: every method pushes the same number of views through its online backbone,
  ``2·E·S·B``: a method with ``V`` views trains ``round(2·E·S/V)`` steps (``E/2`` epochs for
  ``V = 4``). For 2-view methods both budgets are one and the same run, trained once.
  BYOL's momentum encoder adds forward passes that neither budget counts.

Output directory: ``runs/<run>/{config.yaml, backbone.pt, result.json}``, ``results.csv``
(one row per run), ``results.md`` (mean ± std over seeds, floors, verdicts),
``curves_loss.png``, ``curves_knn.png`` and ``compare_config.yaml``. ``result.json`` is
written last and atomically: a run that has one (with the same settings) is skipped on
restart; any other run starts over.
"""

from __future__ import annotations

from solo_clamp.compare.config import (
    BUDGETS,
    CONFIG_DIR,
    RESULT_COLUMNS,
    apply_quick,
    load_config,
    validate_config,
)
from solo_clamp.compare.estimate import estimate
from solo_clamp.compare.plan import plan_runs
from solo_clamp.compare.runner import run_comparison, write_run_configs

__all__ = [
    "BUDGETS",
    "CONFIG_DIR",
    "RESULT_COLUMNS",
    "apply_quick",
    "estimate",
    "load_config",
    "plan_runs",
    "run_comparison",
    "validate_config",
    "write_run_configs",
]
