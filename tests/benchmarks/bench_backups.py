"""Benchmark: `exporter backups create` of a big account archive to an S3 server, against the
plain tools doing less (`zip -r` + `age -r` + boto3's `upload_file`) on the same files, in the same
run. The S3 server is moto's, in a process of its own on loopback.

    python tests/benchmarks/bench_backups.py [--submissions 10000 100000] [--runs 2] [--rewrite] [--restore]
        [--work DIR]

Ours does more than the baseline: it copies the archive's files into a zip (as they are: a backup
of an archive is that archive), re-hashes every file of the zip and recounts its entities (verify),
encrypts, uploads in parts with Content-MD5 and checks the stored sha256. With ``--rewrite`` a third
line backs up the same account through the pipeline instead (the archive read as a source and
written again by the archive sink: the path a backup from the web service takes). Each side runs in
a child process, whose peak memory and CPU seconds (user + system, the baseline's
programs included; moto's server not counted on either side) are reported: on a loaded machine the
CPU ratio moves less than the wall-clock one. Peak memory is each process's own high-water mark
(``VmHWM``; for ``zip`` and ``age``, GNU time's ``%M`` when /usr/bin/time is there): ``ru_maxrss``
of a child started by ``subprocess`` also counts its parent's memory at the fork, which made every
figure at least this script's own (about 200 MB at 100k submissions before it stopped listing the
files with ``rglob``). With ``--restore`` the backup just made is then
verified (``backups verify``: downloaded, decrypted, every file re-hashed) and restored to a zip
(``backups restore --out``), each in a child process of its own, for their time and peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OURS = """
import datetime as dt, json, sys, time
import boto3, resource  # imported before the clock starts, as in the baseline
from tests.benchmarks.bench_backups import peak_mb
from exporter.backups import BackupConfig, create_backup
from exporter.connectors.archive.source import ArchiveSource
src, state, port, recipient, rewrite = sys.argv[1:6]
opts = {"endpoint_url": f"http://127.0.0.1:{port}", "path_style": True, "region": "us-east-1",
        "access_key_id_env": "BENCH_KEY", "secret_access_key_env": "BENCH_SECRET", "chunk_size": "16MiB"}
t = time.perf_counter()
me = resource.getrusage(resource.RUSAGE_SELF)
cpu = me.ru_utime + me.ru_stime
source = ArchiveSource(src)
if rewrite == "1":  # forms named: not a whole archive, so it is replayed through the pipeline
    source = ArchiveSource(src, forms=source.form_ids())
e = create_backup(BackupConfig("bench", state, "s3://bench/ours", opts, [recipient]), source)
me = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t, "size": e["size"], "files": e["archive"]["files"],
                  "rss": peak_mb(), "cpu": me.ru_utime + me.ru_stime - cpu}))
"""

READ_BACK = """
import json, resource, sys, time
from pathlib import Path
from exporter.agecrypt import load_identities
from exporter.backups import restore, verify_backups
from tests.benchmarks.bench_backups import peak_mb
state, key, what, out = sys.argv[1:5]
ids = load_identities(file=key)
t = time.perf_counter()
me = resource.getrusage(resource.RUSAGE_SELF)
cpu = me.ru_utime + me.ru_stime
if what == "verify":
    [(entry, problems)] = verify_backups(state, "bench", "latest", ids)
    assert not problems, problems[:3]
else:
    restore(state, "bench", "latest", ids, out=out)
me = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t, "rss": peak_mb(), "cpu": me.ru_utime + me.ru_stime - cpu}))
"""

BASELINE = """
import json, os, resource, shutil, subprocess, sys, time, boto3
from tests.benchmarks.bench_backups import peak_mb
src, work, port, recipient = sys.argv[1:5]
gnu_time = shutil.which("time")
peaks = []
def run(cmd, **kw):
    if gnu_time:  # the program's own peak (ru_maxrss would count this process's memory at the fork)
        cmd = [gnu_time, "-f", "%M", "-o", f"{work}/peak.txt", *cmd]
    subprocess.run(cmd, check=True, **kw)
    if gnu_time:
        with open(f"{work}/peak.txt") as fh:
            peaks.append(int(fh.read().split()[-1]) / 1024)
me = resource.getrusage(resource.RUSAGE_SELF)
cpu = me.ru_utime + me.ru_stime
t = time.perf_counter()
run(["zip", "-q", "-r", f"{work}/plain.zip", "."], cwd=src)
run(["age", "-r", recipient, "-o", f"{work}/plain.zip.age", f"{work}/plain.zip"])
c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                 aws_access_key_id="k", aws_secret_access_key="s")
c.upload_file(f"{work}/plain.zip.age", "bench", "baseline/plain.zip.age")
use = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
if not gnu_time:
    peaks.append(use[1].ru_maxrss / 1024)
print(json.dumps({"seconds": time.perf_counter() - t, "rss": max(peak_mb(), *peaks),
                  "cpu": sum(u.ru_utime + u.ru_stime for u in use) - cpu}))
"""


def peak_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` (its own, from its start), else
    ``ru_maxrss`` (which may include what its parent held when it was forked)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(code: str, *args: str, env: dict | None = None) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, cwd=ROOT)
    if r.returncode:
        sys.exit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--submissions", type=int, nargs="+", default=[100_000])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rewrite", action="store_true", help="also back up through the pipeline (the web service's path)")
    ap.add_argument("--restore", action="store_true", help="also verify and restore the backup made (time, memory)")
    ap.add_argument("--work", default="/tmp/exporter-bench-backups")
    args = ap.parse_args()
    work = Path(args.work)
    from pyrage import x25519

    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    work.mkdir(parents=True, exist_ok=True)
    key = work / "bench.key"
    key.write_text(str(identity) + "\n")
    key.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import boto3

        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                             aws_access_key_id="k", aws_secret_access_key="s").create_bucket(Bucket="bench")
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        for n in args.submissions:
            bench(work, n, port, recipient, args.runs, args.rewrite, key if args.restore else None)
    finally:
        moto.terminate()
        moto.wait()


def bench(work: Path, submissions: int, port: int, recipient: str, runs: int, rewrite: bool,
          key: Path | None) -> None:
    src = work / f"account-{submissions}"
    if not (src / "manifest.json").exists():
        subprocess.run([sys.executable, str(ROOT / "tests/benchmarks/synth_account.py"), str(src),
                        "--submissions", str(submissions), "--tiny-media"], check=True)
    size = files = 0
    for folder, _dirs, names in os.walk(src):  # (not rglob: it keeps a set of every path it yielded)
        files += len(names)
        size += sum(os.stat(os.path.join(folder, n)).st_size for n in names)
    print(f"account: {submissions} submissions, {files} files, {size / 1e6:.0f} MB")
    env = {"BENCH_KEY": "k", "BENCH_SECRET": "s"}
    for attempt in range(runs):
        for d in ("state", "base"):
            shutil.rmtree(work / d, ignore_errors=True)
        (work / "base").mkdir(parents=True)
        base = child(BASELINE, str(src), str(work / "base"), str(port), recipient)
        ours = child(OURS, str(src), str(work / "state"), str(port), recipient, "0", env=env)
        print(f"run {attempt + 1}: zip + age + upload_file {base['seconds']:.1f} s; exporter backups create "
              f"{ours['seconds']:.1f} s ({ours['files']} files verified, {ours['size'] / 1e6:.0f} MB stored); "
              f"speed ratio {base['seconds'] / ours['seconds']:.2f}x; CPU seconds {base['cpu']:.1f} / "
              f"{ours['cpu']:.1f} (ratio {base['cpu'] / ours['cpu']:.2f}x); peak memory of the children "
              f"{base['rss']:.0f} MB (largest of python, zip, age) / {ours['rss']:.0f} MB")
        if key is not None:
            for what in ("verify", "restore"):
                (work / "restored.zip").unlink(missing_ok=True)
                r = child(READ_BACK, str(work / "state"), str(key), what, str(work / "restored.zip"), env=env)
                print(f"run {attempt + 1}, backups {what}: {r['seconds']:.1f} s, CPU {r['cpu']:.1f} s, "
                      f"peak memory {r['rss']:.0f} MB")
            (work / "restored.zip").unlink(missing_ok=True)
        if rewrite:
            shutil.rmtree(work / "state", ignore_errors=True)
            again = child(OURS, str(src), str(work / "state"), str(port), recipient, "1", env=env)
            print(f"run {attempt + 1}, rewritten through the pipeline: {again['seconds']:.1f} s "
                  f"({again['size'] / 1e6:.0f} MB stored); ratio to the baseline "
                  f"{base['seconds'] / again['seconds']:.2f}x; CPU {again['cpu']:.1f} s; peak memory {again['rss']:.0f} MB")


if __name__ == "__main__":
    main()
