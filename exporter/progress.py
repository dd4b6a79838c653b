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

    def stage(self, text: str) -> None:
        self._last = time.monotonic()
        print(f"{text}...", file=self.stream, flush=True)

    def done(self, summary: RunSummary) -> None:
        pass


class RichProgress:
    """A rich progress bar of submissions (with a total when the source knows it, e.g. an archive),
    plus media count, volume, rate and the form being read."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column

        console = Console(stderr=True)
        if console.width >= 120:
            columns = [SpinnerColumn(), TextColumn("[bold cyan]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("submissions"), TimeElapsedColumn(), TimeRemainingColumn(),
                       TextColumn("{task.fields[extra]}")]
        else:
            # rich narrows every column alike when the line is too long, so on an 80-column terminal
            # the counts and times became "3…": a shorter line there, the form's name cut instead
            columns = [SpinnerColumn(),
                       TextColumn("[bold cyan]{task.description}",
                                  table_column=Column(no_wrap=True, overflow="ellipsis", max_width=16)),
                       BarColumn(bar_width=10), MofNCompleteColumn(), TextColumn("subs"), TimeRemainingColumn(),
                       TextColumn("{task.fields[short]}")]
        self.progress = Progress(*columns, console=console, transient=True, refresh_per_second=4)
        self.task = self.progress.add_task("starting", total=None, extra="", short="")
        self.started = False  # shown from the first batch on: a run refused before shows nothing

    def update(self, summary: RunSummary, current: str | None) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        c = summary.counts
        self.progress.update(
            self.task, total=summary.expected, completed=c.get("submission", 0), description=(current or "reading")[:30],
            extra=f"{c.get('media', 0)} media, {summary.media_bytes / 1e6:.1f} MB, {summary.rate():.0f}/s",
            short=f"{c.get('media', 0)} media, {summary.rate():.0f}/s")

    def stage(self, text: str) -> None:
        if self.started:  # the bar stays, its text says what the run is doing now
            self.progress.update(self.task, description=text[:30])

    def done(self, summary: RunSummary) -> None:
        if self.started:
            self.progress.stop()


class _Quiet:
    def update(self, summary, current):
        pass

    def stage(self, text):
        pass

    def done(self, summary):
        pass


def make_progress(quiet: bool = False):
    """The display for this terminal: a rich bar (of the source's submissions when it knows how
    many, ``RunSummary.expected``), plain lines when stderr is not a terminal, nothing when quiet."""
    if quiet:
        return _Quiet()
    if sys.stderr.isatty():
        try:
            return RichProgress()
        except Exception:  # noqa: BLE001 - a terminal rich cannot drive
            pass
    return PlainProgress()


def format_summary(summary: RunSummary) -> str:
    c = summary.counts
    lines = [
        f"run {summary.run_id} {summary.status} in {summary.seconds:.1f}s from {summary.source}",
        "  read: " + ", ".join(f"{c.get(k, 0)} {label}" for k, label in (
            ("form", "forms"), ("submission", "submissions"), ("media", "media"), ("user", "users"),
            ("group", "groups"), ("list", "lists"))) + (f", {c['document']} documents" if c.get("document") else "")
        + f" ({summary.media_bytes / 1e6:.1f} MB of media{' and documents' if c.get('document') else ''})",
    ]
    for name, per in summary.per_sink.items():  # every destination, in the order given
        lines.append(f"  -> {name}: {per.get('submission', 0)} submissions, {per.get('media', 0)} media, "
                     f"{per.get('form', 0)} forms")
    return "\n".join(lines)
