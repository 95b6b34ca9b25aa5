"""What the bench scripts share: the import path, CPU time, the common flags, JSON output and
the jinja2 templates of ``bench/templates/`` (the console tables and ``report.py``'s page)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path
from typing import Any, Optional

import jinja2
import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# The scripts run as files: this checkout's solo_clamp first, and tests/ (last, so that it
# shadows nothing) for clamp_testing, the home of the one reference loss.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.append(str(REPO_ROOT / "tests"))


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def meminfo_bytes(field: str) -> Optional[int]:
    """A field of /proc/meminfo in bytes (None where there is no such file or field)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def bench_parser(doc: str, quick: str, threads: int) -> argparse.ArgumentParser:
    """The flags every timing script has: ``--quick`` (``quick`` says what it runs),
    ``--threads`` (torch threads) and ``--json`` (where to write the records)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--threads", type=positive_int, default=threads, help="torch threads")
    parser.add_argument("--json", type=Path, help="write the records here")
    return parser


def write_json(path: Optional[Path], records: Any) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, indent=1))


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """``numerator / denominator``, None where either is missing (or the denominator is 0)."""
    return None if numerator is None or not denominator else numerator / denominator


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(template: str, **context: Any) -> str:
    """Renders ``bench/templates/<template>``; its filter ``fmt`` writes a number with ``digits``
    decimals (None as "-")."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(BENCH_DIR / "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = _fmt
    return env.get_template(template).render(**context)
