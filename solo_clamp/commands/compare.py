"""``solo-clamp compare``: CLAMP vs solo-learn's SimCLR, BYOL and VICReg side by side.

    solo-clamp compare                                  # Fashion-MNIST, CPU, ~40 min
    solo-clamp compare --quick --out runs/smoke         # tiny smoke run (a minute or two)
    solo-clamp compare --dataset mnist --methods clamp simclr --seeds 0 1 2
    solo-clamp compare --config scripts/compare/cifar10.yaml --out runs/cifar10   # GPU
    solo-clamp compare --configs-only --out runs/cfgs   # every run's solo-learn cfg, no training
    solo-clamp compare --methods clamp --set recipes.clamp.method_kwargs.rs=5 --out runs/rs5
    solo-clamp compare --config scripts/compare/fashion_mnist_tuned.yaml   # tune lr, then run

Rerunning the same command resumes: finished runs are skipped, unfinished ones start over.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

from solo_clamp.commands import CommandError, require_solo
from solo_clamp.errors import ConfigError

BUDGET_CHOICES = ("equal_epochs", "equal_compute", "both")


def _names(values: Optional[list[str]]) -> Optional[list[str]]:
    """``a b`` or ``a,b`` -> ``[a, b]``."""
    if values is None:
        return None
    return [part for value in values for part in value.split(",") if part]


def _ints(values: Optional[list[str]], flag: str) -> Optional[list[int]]:
    names = _names(values)
    if names is None:
        return None
    try:
        return [int(n) for n in names]
    except ValueError:
        raise CommandError(f"{flag} takes integers, got {' '.join(values)!r}.") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default=None,
        help="fashion_mnist (default), mnist, cifar10, cifar100 or imagenet100: "
        "picks scripts/compare/<dataset>.yaml unless --config is given",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="YAML",
        help="a comparison config (default: scripts/compare/<dataset>.yaml)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="M",
        help="methods with a recipe in the config, e.g. clamp simclr manifoldclr",
    )
    parser.add_argument("--seeds", nargs="+", default=None, metavar="S", help="e.g. 0 1")
    parser.add_argument(
        "--budget",
        choices=BUDGET_CHOICES,
        default=None,
        help="equal_epochs, equal_compute or both (default: the config's)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of the equal_epochs budget (and reference of equal_compute)",
    )
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        metavar="N",
        help="training images per class (MNIST / Fashion-MNIST)",
    )
    parser.add_argument(
        "--views",
        type=int,
        default=None,
        help="views per image of every method that takes more than 2 (e.g. CLAMP; default: "
        "the config's)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="run directory (default: runs/compare-<dataset>[-quick])",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        dest="overrides",
        help="override any existing config field (OmegaConf dotted keys), e.g. "
        "recipes.clamp.method_kwargs.rs=5 recipes.clamp.optimizer.lr=0.5; "
        "applied after the other flags",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke setting: 16 images per class, 2 epochs, batch 16, 1 seed",
    )
    parser.add_argument(
        "--tune-only",
        action="store_true",
        help="stop after the tuning trials (validation scores beside the "
        "validation floors, in results.md and results.csv); no final runs, no test split",
    )
    parser.add_argument(
        "--publish",
        type=Path,
        default=None,
        metavar="DIR",
        help="the study page DIR: its runs.json.gz (every finished run and trial) is restored "
        "into --out first and refreshed after each one, so a study resumes on another machine "
        "from the committed page; after the comparison its results.csv and results.md are "
        "written there (results.md below a marker, byte for byte; the page's own text above "
        "it is kept)",
    )
    parser.add_argument(
        "--configs-only",
        action="store_true",
        help="write compare_config.yaml and every run's exact solo-learn cfg "
        "(runs/<run>/config.yaml) into --out and exit without training",
    )


def apply_overrides(cfg, overrides: list[str]) -> None:
    """``--set a.b=1 c=x``: each KEY must already exist in the config (a typo is an error, not
    a silently added field); values are parsed as YAML (numbers, booleans, lists, null)."""
    from omegaconf import OmegaConf

    missing = object()
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CommandError(f"--set takes KEY=VALUE items, got {item!r}.")
        if OmegaConf.select(cfg, key, default=missing) is missing:
            parent, _, _ = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            known = sorted(node.keys()) if hasattr(node, "keys") else []
            where = f" under {parent!r}" if parent else ""
            raise CommandError(f"--set: the config has no field {key!r}; fields{where}: {known}.")
        # update (not a dotlist merge) so that a list index such as augmentations.0.* works
        OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"value={value}"]).value, merge=True)


def build_config(args: argparse.Namespace):
    """The comparison config: file (or shipped default), then --quick, then the flags, then
    ``--set`` overrides."""
    from solo_clamp import compare

    try:
        cfg = compare.load_config(args.config, args.dataset)
    except ValueError as err:  # compare's checks raise plain ValueError sentences
        raise ConfigError(str(err)) from err
    if args.quick:
        compare.apply_quick(cfg)
    if args.methods:
        cfg.methods = _names(args.methods)
    seeds = _ints(args.seeds, "--seeds")
    if seeds:
        cfg.seeds = seeds
    if args.budget:
        cfg.budgets = list(compare.BUDGETS) if args.budget == "both" else [args.budget]
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.train_per_class is not None:
        cfg.data.train_per_class = args.train_per_class
    if args.views is not None:
        from solo_clamp.methods import facts_of, known

        for method in cfg.recipes:
            rule = facts_of(method).views if method in known() else None
            if rule is not None and (rule.maximum is None or rule.maximum > 2):
                cfg.recipes[method].views = args.views
    if getattr(args, "tune_only", False):
        cfg.tuning.only = True
    if getattr(args, "overrides", None):
        apply_overrides(cfg, args.overrides)
    try:
        compare.validate_config(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return cfg


class _DropMessage(logging.Filter):
    """Drops solo-learn's per-run ``scheduler_interval=step`` resume warning (no resuming
    of a run's checkpoint happens here: unfinished runs start over)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "scheduler_interval" not in record.getMessage()


def _quiet() -> None:
    """One line per run instead of Lightning's and solo-learn's per-run notices."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger().addFilter(_DropMessage())
    for pattern in (".*does not have many workers.*", ".*no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", pattern)


def run(args: argparse.Namespace) -> int:
    require_solo()
    from solo_clamp import compare

    cfg = build_config(args)
    _quiet()
    out = args.out or Path("runs") / f"compare-{cfg.dataset}{'-quick' if cfg.quick else ''}"
    try:
        if args.configs_only:
            for path in compare.write_run_configs(cfg, out):
                print(path)
            return 0
        archive = args.publish / compare.ARCHIVE_NAME if args.publish is not None else None
        summary = compare.run_comparison(cfg, out, archive=archive)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if summary.tuning is not None:
        print(
            f"tuning: trained {len(summary.tuning.trained)} trial(s), skipped "
            f"{len(summary.tuning.skipped)} finished"
        )
    print(f"trained {len(summary.trained)} run(s), skipped {len(summary.skipped)} finished")
    for path in summary.files:
        print(f"  {path}")
    if args.publish is not None:
        for path in compare.publish(out, args.publish):
            print(f"published {path}")
    return 0
