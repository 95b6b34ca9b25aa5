"""CLAMP beside solo-learn's SimCLR, BYOL and VICReg: same data, backbone, views and budget.

One comparison is a YAML file (``scripts/compare/*.yaml``) that names the dataset, the
methods, their recipes (each method's standard hyper-parameters), the shared augmentation
sets, the budget(s), the epochs and the seeds. Every run is one solo-learn method class from
``solo.methods.METHODS``, built from a cfg in solo-learn's parsed layout and trained with a
Lightning ``Trainer``; then its frozen backbone is scored with solo-learn's weighted kNN and a
linear probe (``solo_clamp.evaluation``). Two floors are measured the same way: raw pixels and
the untrained backbone. ManifoldCLR (``solo_clamp.methods.manifoldclr``) has a recipe in the
MNIST and Fashion-MNIST configs and joins with ``--methods ... manifoldclr``.

Budgets (``B`` images per step for every method, ``E`` = ``epochs``, ``S`` = steps per epoch):

* ``equal_epochs``: every method trains ``E·S`` optimiser steps (the literature's protocol);
  a method with ``V`` views sees ``V/2`` times the views of a 2-view method.
* ``equal_compute``: every method pushes the same number of views through its online backbone,
  ``2·E·S·B``: a method with ``V`` views trains ``round(2·E·S/V)`` steps (``E/2`` epochs for
  ``V = 4``). For 2-view methods both budgets are one and the same run, trained once.
  BYOL's momentum encoder adds forward passes that neither budget counts.

Fair tuning (``tuning.enabled``, :mod:`solo_clamp.compare.tuning`): first every method's
learning rate (and any ``tuning.method_kwargs``) is chosen from a grid, with as many trials
for every method, by kNN top-1 on a validation split held out of the training images (no
trial reads the test split); the final runs use each method's selected setting.

Scores (``evaluation``, :mod:`solo_clamp.compare.scores`): kNN and a linear probe on the test
split; with ``evaluation.few_label.enabled`` also few-label probes (the same draws from the kNN
bank for every method, seed and floor), with the method's feature augmentation where it has one.

Each run's solo-learn cfg is ``scripts/compare/run.yaml`` <- the method's recipe <- the run's
own values (:func:`solo_clamp.compare.run_cfg.solo_cfg`), with one warm-up for every method:
the study's ``scheduler.warmup_epochs`` of its ``epochs``, scaled to each run's length.

Augmentation strength (``variants``, :mod:`solo_clamp.compare.strength`): every method trains
under every named variant of the augmentations. Encoder against projector (``geometry``,
:mod:`solo_clamp.compare.encoder_projector`, :mod:`solo_clamp.compare.transfer`): per run,
the geometry and the scores of both, also on a dataset the runs did not train on.

Output directory (every file: ``docs/compare.md``, "Output"): ``results.csv`` and
``results.md`` (:mod:`solo_clamp.compare.report`, verdicts from paired intervals:
:mod:`solo_clamp.compare.verdicts`), the figures, and for resuming ``runs/<run>/`` and
``tuning/<trial>/``. Their ``result.json`` is written last and atomically: a run or trial that
has one with the same settings (:mod:`solo_clamp.compare.fingerprints`) is skipped on restart;
any other starts over. ``--publish DIR`` also keeps every finished result in
``DIR/runs.json.gz`` (:mod:`solo_clamp.compare.archive`): a study resumes from its committed
page on another machine.
"""

from __future__ import annotations

from solo_clamp.compare.archive import ARCHIVE_NAME
from solo_clamp.compare.config import BUDGETS, CONFIG_DIR, apply_quick, load_config, validate_config
from solo_clamp.compare.plan import plan_runs
from solo_clamp.compare.report import RESULT_COLUMNS, publish
from solo_clamp.compare.runner import run_comparison, write_run_configs

__all__ = [
    "ARCHIVE_NAME",
    "BUDGETS",
    "CONFIG_DIR",
    "RESULT_COLUMNS",
    "apply_quick",
    "load_config",
    "plan_runs",
    "publish",
    "run_comparison",
    "validate_config",
    "write_run_configs",
]
