"""``exporter jobs crontab``: the crontab lines and systemd units that run a jobs file on time.

Every line and unit runs ``exporter jobs run FILE --account NAME --due`` at the times of the
account's schedules (its export's and its backup's): ``--due`` decides what is due, so a timer
that wakes more often than needed (a schedule systemd cannot say, a missed time caught up at boot)
does no harm, and a run already done is not done twice.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from . import schedule
from .jobsfile import Account, JobsFile


def command(jobs: JobsFile, account: Account) -> str:
    """The command line that runs ``account`` when due (absolute paths: cron has no PATH)."""
    exe = Path(sys.executable).parent / "exporter"
    head = [str(exe)] if exe.is_file() else [sys.executable, "-m", "exporter"]
    return shlex.join(head + ["-q", "jobs", "run", str(jobs.path.resolve()), "--account", account.name, "--due"])


def _schedules(account: Account) -> list[tuple[str, str]]:
    out = [("export", account.schedule)] if account.schedule else []
    if account.backup and account.backup.schedule:
        out.append(("backup", account.backup.schedule))
    return out


def crontab(jobs: JobsFile) -> list[str]:
    lines = [f"# exporter jobs of {jobs.path.resolve()} (times in this machine's time zone, as cron reads them)",
             "# secrets: the variables each account names must be set for cron (e.g. in /etc/environment or an "
             "env file)"]
    for account in jobs.accounts.values():
        scheds = _schedules(account)
        if not scheds:
            lines.append(f"# {account.name}: no schedule (run it with: {command(jobs, account).replace(' --due', '')})")
            continue
        seen: set[str] = set()
        for action, expr in scheds:
            fields = schedule.cron_line(expr)
            if fields in seen:
                continue
            seen.add(fields)
            note = "" if fields == schedule.expand(expr) else f"  # {expr}: checked by --due every minute"
            lines.append(f"{fields} {command(jobs, account)}{note if note else f'  # {account.name}: {action}'}")
    return lines


def systemd(jobs: JobsFile) -> list[str]:
    """One service and one timer per scheduled account, each preceded by ``# --- PATH``."""
    out: list[str] = []
    for account in jobs.accounts.values():
        scheds = _schedules(account)
        if not scheds:
            continue
        unit = f"exporter-{account.name}"
        variables = sorted({var for _k, var in account.env_refs}
                           | {var for _k, var in (account.alerts.env_refs if account.alerts else ())})
        out += [f"# --- /etc/systemd/system/{unit}.service",
                "[Unit]",
                f"Description=exporter: account {account.name} of {jobs.path.resolve()}",
                "Wants=network-online.target",
                "After=network-online.target",
                "",
                "[Service]",
                "Type=oneshot",
                f"ExecStart={command(jobs, account)}",
                f"WorkingDirectory={account.base_dir}",
                f"# this account's secrets only ({', '.join(variables) or 'none'}): NAME=value lines, readable by "
                "root alone",
                f"EnvironmentFile=-/etc/exporter/{account.name}.env",
                "# a stop lets the export roll back before it is killed",
                "KillMode=mixed",
                "TimeoutStopSec=90",
                "",
                f"# --- /etc/systemd/system/{unit}.timer",
                "[Unit]",
                f"Description=exporter: schedule of account {account.name}",
                "",
                "[Timer]"]
        for action, expr in scheds:
            values = schedule.on_calendar(expr)
            out.append(f"# {action}: {expr}" + ("" if values else " (not expressible here: every minute, --due decides)"))
            out += [f"OnCalendar={v}" for v in (values or ["minutely"])]
        out += ["Persistent=true", "", "[Install]", "WantedBy=timers.target", ""]
    return out
