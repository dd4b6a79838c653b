"""Benchmark: many small accounts over 1, 2, 4 and 8 `exporter worker` processes, against `exporter
jobs run` of the same jobs file on one process, in the same run.

    python tests/benchmarks/bench_scale.py [--accounts 200] [--latency 0.05] [--workers 1,2,4,8]
                                           [--broker redis://127.0.0.1:6379/9] [--work DIR]

Each account is one form of 10 submissions (no media) served by `exporter serve` with ``--latency``
seconds added to every answer (four services, the accounts spread over them), exported to a JSON
folder of its own: an I/O-bound job of about a dozen requests. For each worker count: a fresh
state folder, N workers started (``exporter worker -c 1``, each in a session of its own) and ready,
then ``exporter jobs enqueue FILE`` and the clock runs until every account's state records its run.
Peak memory per worker: the highest resident memory seen (sampled every 0.2 s) of the worker's
Celery processes (main + pool process), and of its whole process tree (with the zygote and the
export it runs). CPU: the seconds of CPU of everything the run started (workers or runner, their
zygotes and exports), of the fake services, and of everything else the machine ran meanwhile
("others, cores": other people's work on a shared machine, in cores busy on average).
The baselines: ``exporter jobs run FILE --parallel 1`` (one account after another) and the default
``--parallel 4``, timed from start to exit. Prints a table; ``--json`` for the figures.

Whatever way it ends (done, failed, Ctrl-C, SIGTERM, SIGHUP), it leaves nothing behind: the
workers, runners and services (each with all it started), the broker's queue and keys of its own
prefix, and its work folder unless ``--work`` named one.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.cluster import Worker, broker_at, serve, tiny_accounts  # noqa: E402

TOKENS = [f"bench-token-{i}-{os.urandom(4).hex()}" for i in range(4)]


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rpartition(b")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def sessions() -> dict[int, list[int]]:
    """The pids of every process, by session (one pass over /proc)."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                out.setdefault(os.getsid(int(name)), []).append(int(name))
    return out


class Sampler(threading.Thread):
    """Peak resident memory of each worker: its Celery processes, and its whole tree (one pass over
    /proc for all the workers, every 0.2 s: the sampling takes little of the CPU it measures)."""

    def __init__(self, workers: list[Worker]):
        super().__init__(daemon=True)
        self.workers, self.stop = workers, threading.Event()
        self.celery = {w.name: 0 for w in workers}
        self.tree = {w.name: 0 for w in workers}

    def run(self) -> None:
        while not self.stop.wait(0.2):
            by_session = sessions()
            for w in self.workers:
                # the worker's Celery processes: its main process and the pool processes it forked;
                # the rest of its session: its zygotes and the exports they fork (and their own workers)
                pids = by_session.get(w.proc.pid, [])
                celery = [pid for pid in pids if pid == w.proc.pid or parent(pid) == w.proc.pid]
                own = sum(rss_kb(pid) for pid in celery)
                self.celery[w.name] = max(self.celery[w.name], own)
                self.tree[w.name] = max(self.tree[w.name], own + sum(rss_kb(pid) for pid in pids if pid not in celery))


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a live process so far (its own, and of the children it has waited for)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            f = fh.read().rpartition(b")")[2].split()
        return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


def children_cpu() -> float:
    """CPU seconds of the processes this one has waited for (each with those it waited for)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process: /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU of what a run starts (waited for, hence counted, once it is stopped), of the services,
    and of everything else the machine ran meanwhile (other people's work on a shared machine)."""

    def __init__(self, services: list[subprocess.Popen]):
        self.services = services

    def start(self) -> None:
        self.own, self.served = children_cpu(), sum(cpu_seconds(p.pid) for p in self.services)
        self.busy, self.t = machine_busy(), time.monotonic()

    def stop(self) -> dict:
        own, served = children_cpu() - self.own, sum(cpu_seconds(p.pid) for p in self.services) - self.served
        other = machine_busy() - self.busy - own - served
        return {"cpu_s": own, "service_cpu_s": served, "other_cpu_s": max(0.0, other),
                "other_cores": max(0.0, other) / (time.monotonic() - self.t)}


def end_session(proc: subprocess.Popen) -> None:
    """SIGKILL to ``proc`` and everything in its session (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def recorded(state: Path, names: list[str]) -> int:
    return sum(1 for n in names if (state / n / "last-export.json").exists())


def check_all_ok(state: Path, names: list[str]) -> None:
    bad = [n for n in names if json.loads((state / n / "last-export.json").read_text())["result"] != "ok"]
    if bad:
        raise SystemExit(f"accounts not exported: {bad[:5]} (see {state / bad[0] / 'logs'})")


def fresh(work: Path, label: str, jobs: Path) -> Path:
    d = work / label
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    shutil.copy(jobs, d / "jobs.toml")
    (d / "out").mkdir()
    return d


def run_jobs(work: Path, jobs: Path, env: dict, names: list[str], parallel: int, meter: Meter) -> dict:
    d = fresh(work, f"jobs-run-p{parallel}", jobs)
    meter.start()
    t = time.perf_counter()
    # a session of its own: whatever way this ends, the runner goes with its zygote and exports
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "-q", "jobs", "run", "jobs.toml", "--parallel",
                             str(parallel)], cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _out, err = proc.communicate()
    finally:
        end_session(proc)
    seconds = time.perf_counter() - t
    cpu = meter.stop()
    if proc.returncode:
        raise SystemExit(f"jobs run failed: {err[-2000:]}")
    check_all_ok(d / "state", names)
    return {"seconds": seconds, "per_minute": len(names) / seconds * 60, **cpu}


def wait_ready(workers: list[Worker], env: dict, timeout: float = 120) -> None:
    """Until every worker answers a ping (Celery's remote control) through the broker."""
    from celery import Celery

    from exporter.worker import Settings, configure

    app = configure(Celery("bench", set_as_current=False), Settings.from_env(env))  # this run's prefix and queue
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(app.control.ping(timeout=1.0)) >= len(workers):
                return
            if any(w.proc.poll() is not None for w in workers):
                raise SystemExit(f"a worker exited: {next(w for w in workers if w.proc.poll() is not None).text()[-2000:]}")
        raise SystemExit(f"workers not ready after {timeout}s")
    finally:
        app.close()


def run_workers(work: Path, jobs: Path, env: dict, names: list[str], n: int, broker_url: str, meter: Meter) -> dict:
    d = fresh(work, f"workers-{n}", jobs)
    tag = os.urandom(4).hex()
    broker = broker_at(broker_url, f"exbench-{tag}", f"exbench-{tag}")
    env = {**env, **broker.env}
    workers: list[Worker] = []
    sampler: Sampler | None = None
    try:
        meter.start()  # from the workers' start: their own start-up is counted
        for i in range(n):
            workers.append(Worker(d, f"b{i}", env, concurrency=1, verbose=False))
        wait_ready(workers, env)
        sampler = Sampler(workers)
        sampler.start()
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "exporter", "-q", "jobs", "enqueue", "jobs.toml"], cwd=d, env=env,
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"enqueue failed: {r.stderr[-2000:]}")
        while recorded(d / "state", names) < len(names):
            if any(w.proc.poll() is not None for w in workers):
                raise SystemExit(f"a worker exited: {workers[0].text()[-2000:]}")
            time.sleep(0.1)
        seconds = time.perf_counter() - t
        sampler.stop.set()
        sampler.join()
        for w in workers:  # a warm shutdown: each waits for its processes, so their CPU is counted
            w.stop()
        cpu = meter.stop()
    finally:
        if sampler is not None:
            sampler.stop.set()
        for w in workers:
            w.stop()
        broker.close()
    check_all_ok(d / "state", names)
    return {"seconds": seconds, "per_minute": len(names) / seconds * 60, **cpu,
            "celery_mb": max(sampler.celery.values()) / 1024, "tree_mb": max(sampler.tree.values()) / 1024}


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the benchmark as Ctrl-C does: through every clean-up on the way out."""
    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--broker", default="redis://127.0.0.1:6379/9")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    stop_on_signals()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    services: list = []
    try:
        for tok in TOKENS:
            services.append(serve(tok, latency=args.latency))
        meter = Meter([p for p, _ in services])
        jobs = work / "jobs.toml"
        tokens = tiny_accounts(jobs, args.accounts, [(url, tok) for (_, url), tok in zip(services, TOKENS, strict=True)],
                               schedule=None, sqlite=False)
        names = sorted(v.removesuffix("_TOKEN").lower() for v in tokens)
        env = {**os.environ, **tokens}
        results: dict = {"accounts": args.accounts, "latency": args.latency, "cpus": os.cpu_count()}
        for parallel in (1, 4):
            key = f"jobs run --parallel {parallel}"
            results[key] = run_jobs(work, jobs, env, names, parallel, meter)
            print(f"{key}: {results[key]}", file=sys.stderr)
        for n in (int(x) for x in args.workers.split(",")):
            results[f"{n} workers"] = run_workers(work, jobs, env, names, n, args.broker, meter)
            print(f"{n} workers: {results[f'{n} workers']}", file=sys.stderr)
    finally:
        for p, _ in services:
            p.terminate()
        for p, _ in services:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report(args, results)


def report(args, results: dict) -> None:
    one = results.get("1 workers")
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{args.accounts} accounts, {args.latency * 1000:g} ms per request, {os.cpu_count()} CPUs")
    print(f"{'run':<24}{'seconds':>9}{'accounts/min':>14}{'vs 1 worker':>13}{'linear':>8}{'CPU s':>8}"
          f"{'service CPU s':>15}{'others, cores':>15}{'worker MB':>11}{'+export MB':>12}")
    for key, r in results.items():
        if not isinstance(r, dict):
            continue
        n = int(key.split()[0]) if key.endswith("workers") else None
        speed = f"{r['per_minute'] / one['per_minute']:.2f}x" if one else "-"
        linear = f"{r['per_minute'] / (n * one['per_minute']):.2f}" if one and n else "-"
        mem = (f"{r['celery_mb']:.0f}", f"{r['tree_mb']:.0f}") if "celery_mb" in r else ("-", "-")
        print(f"{key:<24}{r['seconds']:>9.1f}{r['per_minute']:>14.1f}{speed:>13}{linear:>8}{r['cpu_s']:>8.1f}"
              f"{r['service_cpu_s']:>15.1f}{r['other_cores']:>15.2f}{mem[0]:>11}{mem[1]:>12}")


if __name__ == "__main__":
    main()
