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
    DATASETS,
    DEFAULTS,
    FLOORS,
    LOSS_KEYS,
    RESULT_COLUMNS,
    apply_quick,
    default_config_path,
    load_config,
    torch_threads,
    validate_config,
)
from solo_clamp.compare.data import (
    ComparisonData,
    KnnProbe,
    augmentation_sets,
    build_probe,
    normalisation,
    prepare_data,
    stratified_indices,
)
from solo_clamp.compare.estimate import (
    backbone_throughput,
    estimate,
)
from solo_clamp.compare.evaluation import (
    evaluate_features,
    evaluation_device,
    untrained_backbone,
)
from solo_clamp.compare.persistence import (
    atomic_torch_save,
    atomic_write_text,
    fingerprint,
    finished_result,
    floor_fingerprint,
    run_fingerprint,
)
from solo_clamp.compare.plan import (
    RunSpec,
    expected_run_ids,
    plan_runs,
    run_budget,
    steps_per_epoch,
)
from solo_clamp.compare.report import (
    plot_curves,
    summary_rows,
    write_reports,
    write_results_csv,
    write_results_md,
)
from solo_clamp.compare.runner import (
    ComparisonSummary,
    execute_floor,
    execute_run,
    run_comparison,
)
from solo_clamp.compare.training import (
    TrainedRun,
    build_solo_cfg,
    parse,
    train,
    train_loader,
)

__all__ = [
    "BUDGETS",
    "CONFIG_DIR",
    "ComparisonData",
    "ComparisonSummary",
    "DATASETS",
    "DEFAULTS",
    "FLOORS",
    "KnnProbe",
    "LOSS_KEYS",
    "RESULT_COLUMNS",
    "RunSpec",
    "TrainedRun",
    "apply_quick",
    "atomic_torch_save",
    "atomic_write_text",
    "augmentation_sets",
    "backbone_throughput",
    "build_probe",
    "build_solo_cfg",
    "default_config_path",
    "estimate",
    "evaluate_features",
    "evaluation_device",
    "execute_floor",
    "execute_run",
    "expected_run_ids",
    "fingerprint",
    "finished_result",
    "floor_fingerprint",
    "load_config",
    "normalisation",
    "parse",
    "plan_runs",
    "plot_curves",
    "prepare_data",
    "run_budget",
    "run_comparison",
    "run_fingerprint",
    "steps_per_epoch",
    "stratified_indices",
    "summary_rows",
    "torch_threads",
    "train",
    "train_loader",
    "untrained_backbone",
    "validate_config",
    "write_reports",
    "write_results_csv",
    "write_results_md",
]
