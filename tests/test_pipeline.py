"""Pipeline semantics: batching, fan-out, commit-then-acknowledge, rollback on failure, state."""
import pytest
from exporter.connectors.archive.source import ArchiveSource

from exporter.capabilities import Capabilities
from exporter.errors import SinkError
from exporter.model import Checkpoint
from exporter.pipeline import batches, merged_state, new_run_id, run
from exporter.sinks import RunContext


class RecordingSink:
    capabilities = Capabilities()

    def __init__(self, name, log, fail_on=None, state=None):
        self.name, self.log, self.fail_on, self._state = name, log, fail_on, state
        self.committed = []
        self.pending = []
        self.closed = None

    def open(self, ctx):
        self.log.append((self.name, "open"))

    def write(self, batch):
        for r in batch:
            if self.fail_on and self.fail_on(r):
                raise RuntimeError(f"cannot store {r.kind}")
        self.pending.extend(batch)
        self.log.append((self.name, "write", len(batch)))

    def commit(self):
        self.committed.extend(self.pending)
        self.pending = []
        self.log.append((self.name, "commit"))

    def close(self, ok):
        self.closed = ok
        if not ok:
            self.pending = []
        self.log.append((self.name, "close", ok))


class StatefulRecordingSink(RecordingSink):
    def load_state(self):
        return dict(self._state or {})


class AckingSource(ArchiveSource):
    def __init__(self, path, log):
        super().__init__(path)
        self.log = log
        self.acked = []

    def acknowledge(self, batch):
        self.acked.extend(r.id for r in batch if r.kind == "submission")
        self.log.append(("source", "ack", len(batch)))


def ctx():
    return RunContext(run_id=new_run_id(), source="test")


def test_fan_out_commit_before_acknowledge(sample_archive):
    log = []
    a, b = RecordingSink("a", log), RecordingSink("b", log)
    src = AckingSource(sample_archive, log)
    summary = run(src, [a, b], ctx(), batch_size=7)
    assert [r.kind for r in a.committed] == [r.kind for r in b.committed]
    assert summary.counts["submission"] == 50 == len(src.acked)
    # every acknowledgement comes after both sinks committed that batch
    for i, entry in enumerate(log):
        if entry[:2] == ("source", "ack"):
            assert log[i - 1] == ("b", "commit") and log[i - 2] == ("a", "commit")
    assert a.closed is True and b.closed is True
    assert summary.per_sink["a"]["submission"] == 50


def test_batches_are_bounded_and_close_at_checkpoints(sample_archive):
    recs = list(ArchiveSource(sample_archive).records({}))
    out = list(batches(recs, batch_size=5, batch_bytes=1 << 30))
    assert sum(len(b) for b in out) == len(recs)
    for b in out:
        assert sum(1 for r in b if r.kind == "submission") <= 5
        assert all(r.kind != "checkpoint" for r in b[:-1])  # a checkpoint always ends its batch


def _media_follow_their_submission(out):
    for b in out:
        for i, r in enumerate(b):
            if r.kind == "media":  # its submission is earlier in the same batch
                owner = [x for x in b[:i] if x.kind == "submission"]
                assert owner and owner[-1].id == r.ref.submission_id, (r.ref, [x.kind for x in b])


@pytest.mark.parametrize("limits", [dict(batch_size=1, batch_bytes=1 << 30), dict(batch_size=3, batch_bytes=1 << 30),
                                    dict(batch_size=1000, batch_bytes=1)])
def test_batches_never_part_a_submission_from_its_media(sample_archive, limits):
    recs = list(ArchiveSource(sample_archive).records({}))
    assert any(a.kind == "submission" and b.kind == "media" for a, b in zip(recs, recs[1:], strict=False))
    out = list(batches(recs, **limits))
    assert [r for b in out for r in b] == recs  # nothing lost, nothing reordered
    _media_follow_their_submission(out)
    for b in out:
        assert all(r.kind != "checkpoint" for r in b[:-1])
        # closed as soon as allowed: one submission (with its media) past the limit at most
        assert sum(1 for r in b if r.kind == "submission") <= limits["batch_size"]
    if limits["batch_bytes"] == 1:  # every media reaches the byte limit: the batch ends with its media
        for b in out:
            kinds = [r.kind for r in b]
            assert "media" not in kinds or set(kinds[kinds.index("media"):]) <= {"media", "checkpoint"}


def test_failure_rolls_back_every_sink_and_acknowledges_nothing_more(sample_archive):
    log = []
    a = RecordingSink("a", log)
    b = RecordingSink("b", log, fail_on=lambda r: r.kind == "submission" and r.id == "700010")
    src = AckingSource(sample_archive, log)
    with pytest.raises(SinkError, match=r"b \(write\).*cannot store submission"):
        run(src, [a, b], ctx(), batch_size=5)
    assert a.closed is False and b.closed is False
    assert "700010" not in src.acked
    committed_ids = {r.id for r in b.committed if r.kind == "submission"}
    assert set(src.acked) == committed_ids  # acknowledged == committed everywhere, no more


def test_merged_state_takes_the_oldest_cursor():
    s1 = StatefulRecordingSink("a", [], state={"f1": "2026-01-02 00:00:00", "f2": "2026-03-01 00:00:00"})
    s2 = StatefulRecordingSink("b", [], state={"f1": "2026-01-01 00:00:00"})
    assert merged_state([s1, s2]) == {"f1": "2026-01-01 00:00:00"}  # f2 unknown to b: full read
    assert merged_state([s1, RecordingSink("c", [])]) == {}  # a stateless sink needs everything


def test_checkpoint_reaches_sinks_once_per_form(sample_archive):
    a = RecordingSink("a", [])
    run(ArchiveSource(sample_archive), [a], ctx())
    cks = [r for r in a.committed if isinstance(r, Checkpoint)]
    assert [c.form_id for c in cks] == ["1001", "1002", "1003"] and all(c.cursor for c in cks)


def test_a_run_leaves_the_interpreters_settings_alone(sample_archive):
    """No process-wide tweaks: the cycle collector's thresholds and the thread switch interval
    are the caller's while the run writes, not only after it."""
    import gc
    import sys

    seen = []

    class Watching(RecordingSink):
        def write(self, batch):
            seen.append((gc.get_threshold(), gc.isenabled(), sys.getswitchinterval()))
            super().write(batch)

    before = (gc.get_threshold(), gc.isenabled(), sys.getswitchinterval())
    run(ArchiveSource(sample_archive), [Watching("w", [])], ctx(), batch_size=5)
    assert seen and set(seen) == {before}


def test_a_batch_is_let_go_once_acknowledged(sample_archive):
    """The pipeline holds no batch while the source reads the next one: the cycle collector would
    walk both."""
    import weakref

    class Forgetting(RecordingSink):  # keeps nothing of what it is given
        def write(self, batch):
            self.log.append((self.name, "write", len(batch)))

    class Watched(ArchiveSource):
        def __init__(self, path):
            super().__init__(path)
            self.acked = []
            self.still_held = 0

        def acknowledge(self, batch):
            self.acked.extend(weakref.ref(r) for r in batch if r.kind == "submission")

        def records(self, *args, **kwargs):
            for r in super().records(*args, **kwargs):
                self.still_held += sum(1 for ref in self.acked if ref() is not None)
                yield r

    src = Watched(sample_archive)
    summary = run(src, [Forgetting("f", [])], ctx(), batch_size=5)
    assert summary.batches > 3 and len(src.acked) == 50
    assert src.still_held == 0
