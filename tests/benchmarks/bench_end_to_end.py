"""End-to-end throughput and peak memory: synthetic account -> exporter -> SQLite + files.

    python tests/benchmarks/bench_end_to_end.py --sizes 10000 100000 [--web] [--formats json,csv]

For each size N it builds (once, cached in --work) a synthetic archive of N submissions with
sub-form rows and small media, then runs ``exporter export`` in a child process and reports
submissions/s and the child's peak RSS. The baseline in the same run is a bare replay of the archive
(read + parse every record, no sink), which bounds what the exporter could reach. With ``--web`` the
source is the fake web service over real HTTP instead of the archive.
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
sys.path.insert(0, str(ROOT))


_WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def child_run(args: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run a command in a fresh intermediate process (so the peak RSS is this command's alone);
    return (seconds, peak RSS in MiB)."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAP, *args], check=True, env=env, cwd=ROOT,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t
    return seconds, int(res.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "exporter-bench"))
    ap.add_argument("--formats", default="json,csv")
    ap.add_argument("--web", action="store_true", help="read through the fake web service over HTTP")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in a.sizes:
        arch = work / f"account-{n}"
        if not (arch / "manifest.json").exists():
            t = time.perf_counter()
            subprocess.run([sys.executable, "tests/benchmarks/synth_account.py", str(arch), "--submissions", str(n),
                            "--tiny-media"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            print(f"built {arch} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        out = work / f"out-{n}"

        def fresh(out: Path = out) -> Path:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            return out

        # baselines, same run: (1) read + parse every record of the archive, no sink: the most the
        # pipeline could reach; (2) cp -r of the archive: the file system's cost of writing the same
        # media files and JSON (what the files destination cannot go below)
        replay = [sys.executable, "-c", "import sys; sys.path.insert(0, '.');"
                  "from exporter.connectors.archive.source import ArchiveSource;"
                  f"print(sum(1 for r in ArchiveSource({str(arch)!r}).records({{}}) if r.kind == 'submission'))"]
        results = {"baseline: replay archive, no sink": child_run(replay)}
        fresh()
        results["baseline: cp -r of the archive"] = child_run(["cp", "-r", str(arch), str(out / "copy")])
        env = dict(os.environ)
        server = None
        if a.web:
            from exporter.testing.fake_server import FakeKizeoServer

            env["BENCH_TOKEN"] = "bench-token-0123456789"
            server = FakeKizeoServer(str(arch), env["BENCH_TOKEN"])
            source = ["--source", server.start(), "--token-env", "BENCH_TOKEN"]
        else:
            source = ["--source", str(arch)]
        try:
            for label, dests in (("exporter -> SQLite", lambda o: ["--to", f"sqlite:///{o / 'x.db'}"]),
                                 (f"exporter -> files ({a.formats})", lambda o: ["--to", str(o / "files")]),
                                 ("exporter -> SQLite + files", lambda o: ["--to", f"sqlite:///{o / 'x.db'}",
                                                                           "--to", str(o / "files")])):
                o = fresh()
                cmd = [sys.executable, "-m", "exporter", "-q", "export", *source, *dests(o), "--format", a.formats]
                results[label] = child_run(cmd, env)
        finally:
            if server:
                server.stop()
        shutil.rmtree(out, ignore_errors=True)
        for label, (secs, peak) in results.items():
            rows.append((n, label, secs, n / secs, peak))
    src = "fake web service (HTTP)" if a.web else "archive"
    print(f"\nsource: {src}; media: tiny images (~2 per submission); formats: {a.formats}")
    print("| submissions | run | seconds | submissions/s | peak RSS MiB |")
    print("|---:|---|---:|---:|---:|")
    for n, label, secs, rate, peak in rows:
        print(f"| {n} | {label} | {secs:.1f} | {rate:.0f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
