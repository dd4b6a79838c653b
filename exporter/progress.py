"""Progress on long work: a rich live display on a terminal, plain lines otherwise, nothing with
``--quiet``; and the run summary printed at the end."""
from __future__ import annotations

import sys
import time

from .pipeline import RunSummary


def _line(summary: RunSummary, current: str | None) -> str:
    c = summary.counts
    mb = summary.media_bytes / 1e6
    return (f"{current or 'starting'}: {c.get('form', 0)} forms, {c.get('submission', 0)} submissions, "
            f"{c.get('media', 0)} media ({mb:.1f} MB), {summary.rate():.0f} submissions/s")


class PlainProgress:
    """One line on stderr at most every ``every`` seconds (for cron and CI logs)."""

    def __init__(self, every: float = 5.0, stream=None):
        self.every = every
        self.stream = stream or sys.stderr
        self._last = 0.0

    def update(self, summary: RunSummary, current: str | None) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            print(_line(summary, current), file=self.stream, flush=True)

    def done(self, summary: RunSummary) -> None:
        pass


class RichProgress:
    def __init__(self):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.live = Live("", console=self.console, refresh_per_second=4, transient=True)
        self.live.start()

    def update(self, summary: RunSummary, current: str | None) -> None:
        self.live.update(f"[bold cyan]exporting[/] {_line(summary, current)}")

    def done(self, summary: RunSummary) -> None:
        self.live.stop()


class _Quiet:
    def update(self, summary, current):
        pass

    def done(self, summary):
        pass


def make_progress(quiet: bool = False):
    if quiet:
        return _Quiet()
    if sys.stderr.isatty():
        try:
            return RichProgress()
        except Exception:  # noqa: BLE001 - a terminal rich cannot drive
            pass
    return PlainProgress()


def format_summary(summary: RunSummary, sinks) -> str:
    c = summary.counts
    lines = [
        f"run {summary.run_id} {summary.status} in {summary.seconds:.1f}s from {summary.source}",
        "  read: " + ", ".join(f"{c.get(k, 0)} {label}" for k, label in (
            ("form", "forms"), ("submission", "submissions"), ("media", "media"), ("user", "users"),
            ("group", "groups"), ("list", "lists"))) + f" ({summary.media_bytes / 1e6:.1f} MB of media)",
    ]
    for s in sinks:
        per = summary.per_sink.get(s.name, {})
        lines.append(f"  -> {s.name}: {per.get('submission', 0)} submissions, {per.get('media', 0)} media, "
                     f"{per.get('form', 0)} forms")
    return "\n".join(lines)
