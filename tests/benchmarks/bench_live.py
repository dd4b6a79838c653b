"""The web-service source against a service with latency: the exporter vs a plain sequential client.

    python tests/benchmarks/bench_live.py [--sizes 150 300] [--latency 0.02] [--formats json]

For each size N it builds (once, cached in --work) a synthetic account of N submissions (three
forms, sub-forms, ~2 tiny media per submission; ``synth_account.py``) and serves it with the fake
service in a process of its own, every answer delayed by ``--latency`` seconds (20 ms: a
round trip to a service far away). Then, in the same run:

* the baseline: a plain sequential client (``requests.Session``, one request at a time) doing the
  requests the exporter does for a full export: forms, users, groups, lists and each list, each
  form, its ``data/all``, each submission and each of its media; bodies read, nothing written;
* ``exporter export`` (full mode, to JSON files) with the default ``--workers`` and with
  ``--workers auto``, each in a child process whose peak RSS is measured.

It prints, per size, each run's seconds, its speed-up over the sequential client, the requests it
made per submission (counted by the fake service) and its peak RSS: memory should stay flat as N grows.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
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

TOKEN = "bench-live-token-0123456789"


def serve(archive: str, latency: float, conn) -> None:
    """The fake service, in its own process: answers 'count' (requests so far) and 'stop'."""
    from exporter.testing.fake_server import FakeKizeoServer, Faults

    srv = FakeKizeoServer(archive, TOKEN, faults=Faults(latency=latency))
    conn.send(srv.start())
    while True:
        cmd = conn.recv()
        if cmd == "count":
            conn.send(srv.request_count())
        else:
            srv.stop()
            conn.send("stopped")
            return


def sequential(base: str) -> int:
    """The baseline: the same requests as a full export, one at a time; returns how many."""
    import requests

    from exporter.records import parse_form, parse_submission

    s = requests.Session()
    s.headers["Authorization"] = TOKEN
    n = 0

    def get(path: str):
        nonlocal n
        r = s.get(base + path, timeout=60)
        r.raise_for_status()
        n += 1
        return r

    forms = get("/forms").json()["forms"]
    get("/users")
    get("/groups")
    for lst in get("/lists").json()["lists"]:
        get(f"/lists/{lst['id']}/complete")
    for f in forms:
        form = parse_form(get(f"/forms/{f['id']}").json()["form"])
        for summary in get(f"/forms/{f['id']}/data/all").json()["data"]:
            raw = get(f"/forms/{f['id']}/data/{summary['id']}").json()["data"]
            for name in dict.fromkeys(ref.name for ref in parse_submission(form, raw).media):
                get(f"/forms/{f['id']}/data/{summary['id']}/medias/{requests.utils.quote(name, safe='')}").close()
    s.close()
    return n


def counted(conn, fn) -> tuple[float, int, float | None]:
    """(seconds, requests the service got, fn's result: a peak RSS or None) of ``fn()``."""
    conn.send("count")
    before = conn.recv()
    t = time.perf_counter()
    peak = fn()
    seconds = time.perf_counter() - t
    conn.send("count")
    return seconds, conn.recv() - before, peak


def measure(arch: Path, latency: float, formats: str, work: Path) -> dict:
    """Every run against one account, served by a fresh fake service."""
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=serve, args=(str(arch), latency, child), daemon=True)
    proc.start()
    base = parent.recv()
    try:
        results = {BASELINE: counted(parent, lambda: sequential(base) and None)}
        # bytecode cached as in any installation (a checkout run with PYTHONDONTWRITEBYTECODE=1
        # compiles every module at each start: ~0.5 s of CPU that no user pays)
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
               "BENCH_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        for label, extra in (("exporter, default --workers (4)", []), ("exporter, --workers auto", ["--workers", "auto"])):
            out = work / f"out-{arch.name}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "exporter", "-q", "export", "--source", base, "--token-env", "BENCH_TOKEN",
                   "--to", str(out), "--format", formats, *extra]
            results[label] = counted(parent, lambda cmd=cmd: child_run(cmd, env)[1])
            shutil.rmtree(out, ignore_errors=True)
    finally:
        parent.send("stop")
        parent.recv()
        proc.join(10)
    return results


BASELINE = "sequential client (requests, one at a time)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[150, 300])
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added to every answer (default 0.02)")
    ap.add_argument("--formats", default="json")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "exporter-bench-live"))
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in a.sizes:
        arch = work / f"account-{n}"
        if not (arch / "manifest.json").exists():
            subprocess.run([sys.executable, "tests/benchmarks/synth_account.py", str(arch), "--submissions", str(n),
                            "--tiny-media"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        results = measure(arch, a.latency, a.formats, work)
        base_secs = results[BASELINE][0]
        for label, (secs, requests_made, peak) in results.items():
            rows.append((n, label, secs, base_secs / secs, requests_made / n, peak))
    print(f"\nfake service with {a.latency * 1000:g} ms per answer; full export to {a.formats} files; "
          f"{os.cpu_count()} CPUs")
    print("| submissions | run | seconds | x sequential | requests/submission | peak RSS MiB |")
    print("|---:|---|---:|---:|---:|---:|")
    for n, label, secs, ratio, per_sub, peak in rows:
        rss = "" if peak is None else f"{peak:.0f}"
        print(f"| {n} | {label} | {secs:.1f} | {ratio:.1f} | {per_sub:.2f} | {rss} |")


if __name__ == "__main__":
    main()
