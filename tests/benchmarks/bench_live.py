"""The web-service source against a service with latency: the exporter vs a plain sequential client.

    python tests/benchmarks/bench_live.py [--sizes 150 300 600] [--latency 0.02] [--repeat 3] [--formats json]

For each size N it builds (once, cached in --work) a synthetic account of N submissions (three
forms, sub-forms, ~2 tiny media per submission; ``synth_account.py``) and serves it with the fake
service in a process of its own, every answer delayed by ``--latency`` seconds (20 ms: a
round trip to a service far away). Then, ``--repeat`` times in turn (so a machine busy with
something else weighs on every contender alike):

* the baseline: a plain sequential client (``requests.Session``, one request at a time) doing the
  requests the exporter does for a full export: forms, users, groups, lists and each list, each
  form, its ``data/all``, each submission and each of its media; bodies read, nothing written;
* ``exporter export`` (full mode, to JSON files) with the default ``--workers`` and with
  ``--workers auto``, each in a child process whose peak RSS and CPU time are measured.

It prints, per size and contender, the median of the runs: seconds, speed-up over the sequential
client of the same turn, requests per submission (counted by the fake service), CPU seconds of
the contender and of the fake service, and peak RSS (memory should stay flat as N grows). The
CPU columns say what bounds a run on a small machine: with 20 ms per answer and 16 requests in
flight, the exporter and the fake must both do their share in 20 ms / 16 per request.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOKEN = "bench-live-token-0123456789"
BASELINE = "sequential client (requests, one at a time)"
RUNS = (("exporter, default --workers (4)", []), ("exporter, --workers auto", ["--workers", "auto"]))

# the child's seconds, peak RSS (KiB) and CPU seconds (user + system), measured by a wrapper
# process (its own start-up is not the exporter's, so it is not counted)
_WRAP = ("import resource, subprocess, sys, time; t = time.perf_counter();"
         "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); t = time.perf_counter() - t;"
         "ru = resource.getrusage(resource.RUSAGE_CHILDREN); print(t, ru.ru_maxrss, ru.ru_utime + ru.ru_stime)")


def serve(archive: str, latency: float, conn) -> None:
    """The fake service, in its own process: answers 'count' with (requests so far, CPU seconds
    of this process so far), and 'stop'."""
    from exporter.testing.fake_server import FakeKizeoServer, Faults

    srv = FakeKizeoServer(archive, TOKEN, faults=Faults(latency=latency))
    conn.send(srv.start())
    while True:
        cmd = conn.recv()
        if cmd == "count":
            conn.send((srv.request_count(), time.process_time()))
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


def child(cmd: list[str], env: dict) -> tuple[float, float | None, float]:
    """Run ``cmd`` in a fresh intermediate process (so the figures are the command's alone):
    (seconds, peak RSS in MiB, CPU seconds)."""
    res = subprocess.run([sys.executable, "-c", _WRAP, *cmd], check=True, env=env, cwd=ROOT,
                         capture_output=True, text=True)
    seconds, rss, cpu = res.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(rss) / 1024, float(cpu)


def counted(conn, fn) -> dict:
    """Requests the service got, its CPU seconds, and ``fn()``'s (seconds, peak RSS, CPU seconds)."""
    conn.send("count")
    requests_before, fake_before = conn.recv()
    seconds, peak, cpu = fn()
    conn.send("count")
    requests_after, fake_after = conn.recv()
    return {"seconds": seconds, "requests": requests_after - requests_before, "peak": peak, "cpu": cpu,
            "fake_cpu": fake_after - fake_before}


def baseline(base: str) -> tuple[float, None, float]:
    t, cpu = time.perf_counter(), time.process_time()
    sequential(base)
    return time.perf_counter() - t, None, time.process_time() - cpu


def measure(arch: Path, latency: float, formats: str, work: Path, repeat: int) -> list[dict]:
    """``repeat`` turns of every contender against one account, served by a fresh fake service."""
    parent, conn = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=serve, args=(str(arch), latency, conn), daemon=True)
    proc.start()
    base = parent.recv()
    # bytecode cached as in any installation (a checkout run with PYTHONDONTWRITEBYTECODE=1
    # compiles every module at each start: ~0.5 s of CPU that no user pays)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
           "BENCH_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    turns = []
    try:
        counted(parent, lambda: baseline(base))  # once before: the fake loads the account
        for _ in range(repeat):
            turn = {BASELINE: counted(parent, lambda: baseline(base))}
            for label, extra in RUNS:
                out = work / f"out-{arch.name}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [sys.executable, "-m", "exporter", "-q", "export", "--source", base, "--token-env",
                       "BENCH_TOKEN", "--to", str(out), "--format", formats, *extra]
                turn[label] = counted(parent, lambda cmd=cmd: child(cmd, env))
                shutil.rmtree(out, ignore_errors=True)
            turns.append(turn)
    finally:
        parent.send("stop")
        parent.recv()
        proc.join(10)
    return turns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[150, 300, 600])
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added to every answer (default 0.02)")
    ap.add_argument("--repeat", type=int, default=3, help="turns per size; the medians are printed (default 3)")
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
        turns = measure(arch, a.latency, a.formats, work, max(1, a.repeat))
        for label in turns[0]:
            runs = [t[label] for t in turns]

            def med(key: str, runs: list = runs) -> float:
                return statistics.median(r[key] for r in runs)

            ratios = [t[BASELINE]["seconds"] / t[label]["seconds"] for t in turns]
            peak = None if runs[0]["peak"] is None else med("peak")
            rows.append((n, label, med("seconds"), statistics.median(ratios), min(ratios), max(ratios),
                         med("requests") / n, med("cpu"), med("fake_cpu"), peak))
    try:
        load = " load average {:.1f} {:.1f} {:.1f} at the end;".format(*os.getloadavg())
    except OSError:
        load = ""
    print(f"\nfake service with {a.latency * 1000:g} ms per answer; full export to {a.formats} files; "
          f"{os.cpu_count()} CPUs;{load} medians of {max(1, a.repeat)} turns (x sequential: min-max)")
    print("| submissions | run | seconds | x sequential | requests/submission | CPU s | fake CPU s | peak RSS MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n, label, secs, ratio, lo, hi, per_sub, cpu, fake_cpu, peak in rows:
        rss = "" if peak is None else f"{peak:.0f}"
        spread = "" if label == BASELINE else f" ({lo:.1f}-{hi:.1f})"
        print(f"| {n} | {label} | {secs:.1f} | {ratio:.1f}{spread} | {per_sub:.2f} | {cpu:.2f} | {fake_cpu:.2f} | {rss} |")


if __name__ == "__main__":
    main()
