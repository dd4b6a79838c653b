"""DOCX reports, one file per submission: time and peak memory as the account grows, with PDF
(the same reports) measured alongside as the baseline in the same run.

    python tests/benchmarks/bench_docx.py [--sizes 50 500 5000] [--work DIR]

For each size N it builds (once, cached in --work) a synthetic archive of N submissions
(``synth_account.py``: 3 forms, sub-form rows, ~2 small photos or signatures per submission),
then runs ``exporter export --format docx`` and ``--format pdf`` from it, each in a fresh child
process (peak RSS is that export's alone), and prints seconds, reports/s and peak RSS. The
export goes through the real pipeline, which is where the memory of saved documents used to pile
up (python-docx documents are reference cycles, and the pipeline runs the cycle collector
rarely): the peak must stay flat from 50 to 5,000 submissions.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_end_to_end import child_run  # noqa: E402


def archive(work: Path, n: int) -> Path:
    arch = work / f"account-{n}"
    if not (arch / "manifest.json").exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, "tests/benchmarks/synth_account.py", str(arch), "--submissions", str(n)],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"built {arch} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 5000])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "exporter-bench-docx"))
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    print(f"{'format':6} {'submissions':>11} {'seconds':>8} {'reports/s':>9} {'peak RSS':>9}")
    for n in a.sizes:
        arch = archive(work, n)
        for fmt in ("pdf", "docx"):  # pdf first: the baseline
            out = work / f"out-{n}-{fmt}"
            shutil.rmtree(out, ignore_errors=True)
            seconds, rss = child_run([sys.executable, "-m", "exporter", "export", "--source", str(arch),
                                      "--to", str(out), "--format", fmt], env=env)
            reports = sum(1 for _ in out.rglob(f"reports/*.{fmt}"))
            print(f"{fmt:6} {n:11,} {seconds:8.1f} {reports / seconds:9.1f} {rss:7.0f} MB", flush=True)
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
