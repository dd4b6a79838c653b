"""A stop signal arriving while a failed run cleans up does not cut the clean-up short nor hide
the first error (the pipeline's ``close_failed`` and the source's close)."""
from __future__ import annotations

import os
import signal

import pytest

from exporter import interrupts, pipeline
from exporter.errors import Interrupted, SinkError
from exporter.sinks import RunContext


class Sink:
    def __init__(self, name, log, fail_write=False, signal_on_close=False):
        self.name, self.log, self.fail_write, self.signal_on_close = name, log, fail_write, signal_on_close

    def open(self, ctx):
        self.log.append(f"{self.name} open")

    def write(self, batch):
        if self.fail_write:
            raise RuntimeError("the first error")

    def commit(self):
        pass

    def close(self, ok):
        if self.signal_on_close:
            os.kill(os.getpid(), signal.SIGTERM)  # systemd stops the unit while it rolls back
        self.log.append(f"{self.name} close {ok}")


class Source:
    description = "test"

    def __init__(self, log, signal_on_close=False):
        self.log, self.signal_on_close = log, signal_on_close

    def records(self, state):
        from exporter.model import Checkpoint
        yield Checkpoint("1", None, "full")

    def acknowledge(self, batch):
        pass

    def close(self):
        if self.signal_on_close:
            os.kill(os.getpid(), signal.SIGTERM)
        self.log.append("source close")


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in interrupts.STOP_SIGNALS}
    interrupts.install()
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def ctx():
    return RunContext(run_id="r", source="test", mode="full")


@pytest.mark.parametrize("where", ["sink", "source"])
def test_a_signal_during_the_clean_up_of_a_failed_run_neither_cuts_it_nor_hides_the_first_error(where, handlers):
    log: list[str] = []
    sinks = [Sink("a", log), Sink("b", log, fail_write=True, signal_on_close=where == "sink")]
    with pytest.raises(SinkError, match="the first error"):
        pipeline.run(Source(log, signal_on_close=where == "source"), sinks, ctx())
    assert log == ["a open", "b open", "b close False", "a close False", "source close"]


def test_a_signal_while_a_finished_run_closes_its_source_rolls_every_sink_back(handlers):
    log: list[str] = []
    with pytest.raises(Interrupted):
        pipeline.run(Source(log, signal_on_close=True), [Sink("a", log)], ctx())
    assert log[-1] == "a close False" and "a close True" not in log
