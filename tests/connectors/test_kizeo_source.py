"""WebSource over the fake service (real HTTP): full, cursor and unread modes."""
from __future__ import annotations

import logging

import pytest
from exporter.connectors.archive.reader import ArchiveReader
from exporter.connectors.archive.sink import ArchiveSink
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.archive.verify import verify
from exporter.connectors.kizeo import WebSource

from exporter.capabilities import Capabilities
from exporter.errors import AuthError, ConfigError, NotFoundError, SinkError
from exporter.pipeline import new_run_id, run
from exporter.sinks import RunContext
from exporter.testing.fake_server import Faults
from tests.connectors.conftest_kizeo import (
    TOKEN,
    make_client,
    serve,
)

pytestmark = pytest.mark.network


def _key(r):
    """What must be identical between the archive source and the web source, per record."""
    k = r.kind
    if k == "account":
        return (k,)
    if k in ("user", "group", "list", "form"):
        return (k, r.raw)
    if k == "submission":
        return (k, r.form_id, r.id, r.meta, r.values, r.text, r.subforms, r.media)
    if k == "media":
        with r.open() as fh:
            data = fh.read()
        import hashlib

        assert hashlib.sha256(data).hexdigest() == r.sha256 and len(data) == r.size
        return (k, r.ref, r.content_type, r.size, r.sha256)
    if k == "checkpoint":
        return (k, r.form_id, r.cursor, r.mode)
    raise AssertionError(k)


def _archive_keys(path, **kw):
    src = ArchiveSource(path, **kw)
    try:
        return [_key(r) for r in src.records({})]
    finally:
        src.close()


def _web_keys(server, state=None, **kw):
    src = WebSource(make_client(server), **kw)
    try:
        return [_key(r) for r in src.records(state or {})]
    finally:
        src.close()


@pytest.mark.parametrize("archive", ["rich", "sample"])
def test_full_read_matches_the_archive_record_for_record(archive, rich_archive, sample_archive, caplog):
    path = rich_archive if archive == "rich" else sample_archive
    caplog.set_level(logging.WARNING)
    with serve(path) as srv:
        web = _web_keys(srv, workers=3)
    want = _archive_keys(path)
    assert len(web) == len(want)
    assert web == want
    kinds = {k[0] for k in want}
    assert {"account", "user", "group", "list", "form", "submission", "media", "checkpoint"} <= kinds
    if archive == "rich":
        # the missing media is a warning, not a failure; the others all arrived
        assert "'absent.jpg' is missing on the service" in caplog.text
        names = [k[1].name for k in web if k[0] == "media"]
        assert {"photo été 1.jpg", "b 100% fini.jpg", "ligne 0.jpg", "rangée.jpg"} <= set(names)
        assert names.count("double.jpg") == 2  # two fields, one download, two records
        assert "absent.jpg" not in names


def test_records_order_and_account(fake):
    src = WebSource(make_client(fake), timezone="Europe/Paris")
    recs = list(src.records({}))
    src.close()
    kinds = [r.kind for r in recs]
    assert kinds[0] == "account" and recs[0].timezone == "Europe/Paris"
    assert recs[0].raw == {"source": fake.base_url, "timezone": "Europe/Paris"}
    assert TOKEN not in repr(recs[0]) and TOKEN not in src.description
    first_form = kinds.index("form")
    assert set(kinds[1:first_form]) == {"user", "group", "list"}
    assert kinds[1:first_form] == sorted(kinds[1:first_form], key=["user", "group", "list"].index)
    assert [r.id for r in recs if r.kind == "form"] == ["42", "43", "44"]
    assert [r.cursor for r in recs if r.kind == "checkpoint"] == ["2026-03-06 07:15:00", "2026-02-03 09:00:00", None]
    # each media right after its submission
    current = None
    for r in recs:
        if r.kind == "submission":
            current = r.id
        elif r.kind == "media":
            assert r.ref.submission_id == current


def test_round_trip_web_to_archive_reproduces_every_file(rich_archive, tmp_path):
    out = tmp_path / "copy.zip"
    with serve(rich_archive, Faults(rate_limit_every=9, retry_after=0, fail_503_every=11, drop_every=13)) as srv:
        src = WebSource(make_client(srv, attempts=10), workers=4)
        summary = run(src, [ArchiveSink(out)], RunContext(run_id=new_run_id(), source=src.description))
    assert summary.counts["submission"] == 7
    assert verify(out) == []
    got, want = ArchiveReader(out).files(), ArchiveReader(rich_archive).files()
    # the fixture stores one submission of form 43 in the flat shape; the service's data/{id}
    # serves it nested, so that one file differs in shape (same records), every other is identical
    flat_file = "forms/43/submissions.jsonl"
    assert got.keys() == want.keys()
    assert {k: v for k, v in got.items() if k != flat_file} == {k: v for k, v in want.items() if k != flat_file}
    assert _archive_keys(out)[1:] == _archive_keys(rich_archive)[1:]


def test_faults_do_not_change_the_result(sample_archive):
    with serve(sample_archive, Faults(rate_limit_every=7, retry_after=0, fail_503_every=11, drop_every=13)) as srv:
        src = WebSource(make_client(srv, attempts=10), workers=4)
        web = [_key(r) for r in src.records({})]
        src.close()
        assert srv.request_count() > 200
    assert web == _archive_keys(sample_archive)


def test_unknown_form_is_refused_before_anything_is_read(fake):
    with pytest.raises(NotFoundError, match="unknown form id 'nope'"):
        WebSource(make_client(fake), forms=["42", "nope"])
    assert fake.request_count("/forms/*") == 0


def test_selected_forms_only(fake):
    recs = list(WebSource(make_client(fake), forms=["43"]).records({}))
    assert [r.id for r in recs if r.kind == "form"] == ["43"]
    assert [r.id for r in recs if r.kind == "submission"] == ["100", "101"]
    assert fake.request_count("/forms/42*") == 0


def test_bad_options():
    class Dummy:
        description = "x"

    with pytest.raises(ConfigError, match="unknown incremental mode"):
        WebSource(Dummy(), mode="sometimes")
    with pytest.raises(ConfigError, match="action"):
        WebSource(Dummy(), mode="unread")
    with pytest.raises(ConfigError, match="time zone"):
        WebSource(Dummy(), timezone="Mars/Olympus")


def test_full_mode_keeps_a_bounded_window(sample_archive):
    with serve(sample_archive) as srv:
        src = WebSource(make_client(srv), forms=["1001"], workers=1, read_ahead=0)
        it = src.records({})
        for r in it:
            if r.kind == "submission":
                break
        # one worker, window of 2: at most 2 submissions fetched ahead of the consumer
        assert srv.request_count("/forms/1001/data/7?????") <= 3
        src.close()


def test_read_ahead_is_bounded_and_changes_nothing(sample_archive):
    import time

    with serve(sample_archive) as srv:
        src = WebSource(make_client(srv), forms=["1001"], workers=1, read_ahead=5)
        it = src.records({})
        for r in it:
            if r.kind == "submission":
                break
        time.sleep(0.5)  # the reader fills its queue, then waits
        assert src._reader.queued <= 5
        # window of 2 in the pool + 5 records queued (each submission is at least one record)
        assert srv.request_count("/forms/1001/data/7?????") <= 3 + 5
        src.close()
        assert srv.request_count("/forms/1001/data/7?????") <= 3 + 5
        # the same records in the same order, with or without reading ahead
        assert _web_keys(srv, forms=["1001"], read_ahead=3) == _web_keys(srv, forms=["1001"], read_ahead=0)


# ---- cursor mode -------------------------------------------------------------------------------


def test_cursor_mode_reads_changes_since_cursor_minus_overlap(rich_archive):
    with serve(rich_archive) as srv:
        # form 42: cursor 2026-03-05 12:03:00 with 300 s overlap -> >= 11:58:00: "2" (12:00) and "5"
        # form 43: no cursor -> full read of that form
        state = {"42": "2026-03-05 12:03:00"}
        src = WebSource(make_client(srv), mode="cursor", overlap_seconds=300)
        recs = list(src.records(state))
        subs = [(r.form_id, r.id) for r in recs if r.kind == "submission"]
        assert subs == [("42", "2"), ("42", "5"), ("43", "100"), ("43", "101")]
        cps = {r.form_id: (r.cursor, r.mode) for r in recs if r.kind == "checkpoint"}
        assert cps == {"42": ("2026-03-06 07:15:00", "cursor"), "43": ("2026-02-03 09:00:00", "cursor"),
                       "44": (None, "cursor")}
        # windows from a week after the cursor, doubling: 2026-03-05 to the horizon (now + 1 day)
        assert 1 <= srv.request_count("/forms/42/data/advanced") <= 8
        assert srv.request_count("/forms/43/data/all") == 1
        # flat records carry the same typed values and media as the nested ones
        web2 = next(r for r in recs if r.kind == "submission" and r.id == "2")
        media = [r for r in recs if r.kind == "media" and r.ref.submission_id == "2"]
        assert [m.ref.name for m in media] == ["a.jpg", "b 100% fini.jpg"]
        nested = next(r for r in ArchiveSource(rich_archive).records({}) if r.kind == "submission" and r.id == "2")
        assert (web2.values, web2.subforms, web2.media) == (nested.values, nested.subforms, nested.media)

        # an edit after the cursor comes back on the next run; nothing else does
        edited = ArchiveReader(rich_archive).submissions_raw("42")
        sub1 = next(s for s in edited if s["id"] == "1")
        sub1["update_time"] = "2026-03-07 10:00:00"
        sub1["fields"]["titre"]["value"] = "Premier (modifié)"
        srv.put_submission("42", sub1)
        recs = list(WebSource(make_client(srv), mode="cursor", forms=["42"], overlap_seconds=0)
                    .records({"42": "2026-03-06 07:15:00"}))
        subs = [(r.id, r.values.get("titre")) for r in recs if r.kind == "submission"]
        assert subs == [("5", "Même fichier deux fois"), ("1", "Premier (modifié)")]
        assert [r.cursor for r in recs if r.kind == "checkpoint"] == ["2026-03-07 10:00:00"]


def test_cursor_never_goes_backwards(fake):
    recs = list(WebSource(make_client(fake), mode="cursor", forms=["42"]).records({"42": "2027-01-01 00:00:00"}))
    assert [r.kind for r in recs if r.kind == "submission"] == []
    assert [r.cursor for r in recs if r.kind == "checkpoint"] == ["2027-01-01 00:00:00"]


# ---- unread mode -------------------------------------------------------------------------------


class RecordingSink:
    """A minimal in-memory sink that can fail on a given batch; it records commits."""

    capabilities = Capabilities(transactions=True)

    def __init__(self, name="mem", fail_on_batch: int | None = None, server=None):
        self.name = name
        self.fail_on_batch = fail_on_batch
        self.server = server
        self.pending: list = []
        self.committed: list = []
        self.commits: list[tuple[set, set]] = []  # (ids committed, ids already marked) per commit
        self.batches = 0
        self.closed = None

    def open(self, ctx):
        pass

    def write(self, batch):
        self.batches += 1
        if self.fail_on_batch == self.batches:
            raise SinkError("disk full", context=self.name)
        self.pending.extend(batch)

    def commit(self):
        if self.server is not None:
            ids = {(r.form_id, r.id) for r in self.pending if r.kind == "submission"}
            marked = {(f, i) for f, _, m in self.server.marked for i in m}
            self.commits.append((ids, marked))
        self.committed.extend(self.pending)
        self.pending = []

    def close(self, ok):
        self.closed = ok
        self.pending = []


def _unread_run(srv, sink, *, limit=2, forms=None):
    src = WebSource(make_client(srv), mode="unread", action="erp", unread_limit=limit, forms=forms)
    return run(src, [sink], RunContext(run_id=new_run_id(), source=src.description, mode="unread"),
               batch_size=1000)


def test_unread_marks_only_what_every_sink_committed(rich_archive):
    with serve(rich_archive) as srv:
        sink = RecordingSink(server=srv)
        summary = _unread_run(srv, sink)
        subs = [(r.form_id, r.id) for r in sink.committed if r.kind == "submission"]
        assert subs == [("42", "1"), ("42", "2"), ("42", "3"), ("42", "4"), ("42", "5"), ("43", "100"), ("43", "101")]
        assert summary.counts["submission"] == 7
        # pages of 2: the pipeline commits at each page's checkpoint, then the source marks
        assert srv.marked == [("42", "erp", ["1", "2"]), ("42", "erp", ["3", "4"]), ("42", "erp", ["5"]),
                              ("43", "erp", ["100", "101"])]
        # every commit happened before its ids were marked, and every earlier batch was marked
        # before the next commit
        committed: set = set()
        for batch_ids, marked_then in sink.commits:
            assert not (batch_ids & marked_then)
            assert committed <= marked_then
            committed |= batch_ids
        assert len(sink.commits) >= 4
        # a second run finds nothing unread
        sink2 = RecordingSink()
        _unread_run(srv, sink2)
        assert [r for r in sink2.committed if r.kind == "submission"] == []
        # an edited submission is unread again (includeupdated)
        raw = next(s for s in ArchiveReader(rich_archive).submissions_raw("42") if s["id"] == "4")
        raw["update_time"] = "2026-04-01 00:00:00"
        srv.put_submission("42", raw)
        sink3 = RecordingSink()
        _unread_run(srv, sink3)
        assert [(r.form_id, r.id) for r in sink3.committed if r.kind == "submission"] == [("42", "4")]


def test_unread_failure_marks_nothing_uncommitted_and_next_run_resumes(rich_archive):
    with serve(rich_archive) as srv:
        sink = RecordingSink(fail_on_batch=4)  # batches: [acct..form42 p1] [p2] [p3+cp] -> 4th fails
        with pytest.raises(SinkError, match="disk full"):
            _unread_run(srv, sink)
        assert sink.closed is False
        marked = [i for _, _, ids in srv.marked for i in ids]
        committed = [r.id for r in sink.committed if r.kind == "submission"]
        assert marked == committed == ["1", "2", "3", "4", "5"]
        sink2 = RecordingSink()
        _unread_run(srv, sink2)
        assert [r.id for r in sink2.committed if r.kind == "submission"] == ["100", "101"]


def test_unread_without_acknowledgement_stops_instead_of_looping(rich_archive):
    with serve(rich_archive) as srv:
        src = WebSource(make_client(srv), mode="unread", action="erp", unread_limit=2)
        recs = list(src.records({}))  # nobody acknowledges
        subs = [(r.form_id, r.id) for r in recs if r.kind == "submission"]
        # one page per form, then the form stops: the next run continues from the markers
        assert subs == [("42", "1"), ("42", "2"), ("43", "100"), ("43", "101")]
        assert srv.marked == []
        assert srv.request_count("/forms/42/data/unread/*") == 1
        assert [r.form_id for r in recs if r.kind == "checkpoint"] == ["42", "43", "44"]
        # acknowledging a batch marks exactly its submissions
        src.acknowledge([r for r in recs if r.kind == "submission" and r.form_id == "42"])
        assert srv.marked == [("42", "erp", ["1", "2"])]
        src.close()


def test_unread_pending_ack_flag_is_raised_at_page_boundaries(fake):
    src = WebSource(make_client(fake), mode="unread", action="a", unread_limit=2, forms=["42"])
    it = src.records({})
    seen = []
    for r in it:
        if src.pending_ack:
            assert r.kind == "checkpoint"
            src.acknowledge(seen)
            seen = []
        elif r.kind == "submission":
            seen.append(r)
    src.acknowledge(seen)
    assert [ids for _, _, ids in fake.marked] == [["1", "2"], ["3", "4"], ["5"]]


def test_unread_stops_when_the_service_ignores_markers(rich_archive, caplog):
    # a service that keeps serving the same records must not make us loop
    with serve(rich_archive, Faults(ignore_read_marks=True)) as srv:
        sink = RecordingSink()
        _unread_run(srv, sink, forms=["42"])
        ids = [r.id for r in sink.committed if r.kind == "submission"]
        assert ids == ["1", "2"]
        assert "served again" in caplog.text


def test_media_cut_mid_stream_is_downloaded_again(rich_archive, caplog):
    caplog.set_level(logging.INFO)
    with serve(rich_archive, Faults(truncate_media_every=2)) as srv:
        web = _web_keys(srv, forms=["42"], workers=2)
        assert srv.request_count("/forms/42/data/*/medias/*") > 10
    assert "connection lost while downloading" in caplog.text
    assert web == _archive_keys(rich_archive, forms=["42"])  # every media's size and sha256 as archived


def test_submission_deleted_during_the_export_is_skipped(rich_archive, caplog):
    with serve(rich_archive, Faults(fail_paths={"/forms/42/data/3": 501})) as srv:
        recs = list(WebSource(make_client(srv), forms=["42"]).records({}))
    assert [r.id for r in recs if r.kind == "submission"] == ["1", "2", "4", "5"]
    assert "submission 3 disappeared during the export" in caplog.text
    # a deletion seen: on the checkpoint, and out of the listing (sinks take it as deleted now)
    cp = recs[-1]
    assert cp.kind == "checkpoint" and cp.gone == {"3"} and cp.listing == {"1", "2", "4", "5"}


# ---- issue 16: the real API, read loss-free ------------------------------------------------------


def test_unread_mode_keeps_sub_forms_and_pages_of_100(rich_archive):
    with serve(rich_archive) as srv:
        src = WebSource(make_client(srv), mode="unread", action="erp", forms=["42"])
        web = [(r.id, r.values, r.subforms, r.media) for r in src.records({}) if r.kind == "submission"]
        src.close()
        assert srv.request_count("/forms/42/data/unread/erp/100") == 1
    archived = [(r.id, r.values, r.subforms, r.media) for r in ArchiveSource(rich_archive, forms=["42"]).records({})
                if r.kind == "submission"]
    assert web == archived
    assert any(sf for _, _, sf, _ in web)  # the rich archive's sub-form rows are there


@pytest.mark.parametrize("status", [401, 403])
def test_a_token_without_the_rights_fails_in_one_line_that_says_how_to_go_on(rich_archive, status):
    with serve(rich_archive, refuse=("groups", "lists"), refuse_status=status) as srv:
        src = WebSource(make_client(srv))
        with pytest.raises(AuthError) as ei:
            list(src.records({}))
        src.close()
        msg = str(ei.value)
        assert "lacks the rights for a full export" in msg and "--skip groups" in msg and "\n" not in msg
        assert TOKEN not in msg
        # going on knowingly: what the token may read is exported, the rest is not asked for
        asked = srv.request_count("/groups"), srv.request_count("/lists")  # (asked together, above)
        src = WebSource(make_client(srv), skip=["groups,lists"])
        kinds = [r.kind for r in src.records({})]
        src.close()
        assert "user" in kinds and "group" not in kinds and "list" not in kinds and "submission" in kinds
        assert (srv.request_count("/groups"), srv.request_count("/lists")) == asked


def test_a_bad_token_is_not_reported_as_missing_rights(fake):
    src = WebSource(make_client(fake, token="not-the-token"))
    with pytest.raises(AuthError) as ei:
        list(src.records({}))
    assert "lacks the rights" not in str(ei.value) and "GET /forms" in str(ei.value)


def test_skip_names_are_checked():
    from exporter.connectors.kizeo.source import parse_skip

    assert parse_skip(["users, Lists"]) == {"users", "lists"}
    with pytest.raises(ConfigError, match="--skip takes users, groups, lists"):
        parse_skip("users,forms")


@pytest.mark.parametrize("gone", ["501", "502"])  # the first list (read alone) or a later one
def test_a_list_deleted_between_the_index_and_its_reading_is_left_out_with_a_warning(sample_archive, gone, caplog):
    with serve(sample_archive) as srv:
        client = make_client(srv)
        index = client.lists

        def index_then_deleted():  # an administrator deletes a list right after GET /lists
            got = index()
            srv.delete_list(gone)
            return got

        client.lists = index_then_deleted
        src = WebSource(client, mode="full")
        lists = [r.id for r in src.records({}) if r.kind == "list"]
        src.close()
        assert srv.request_count(f"/lists/{gone}/complete") == 1
    assert lists == [x for x in ("501", "502") if x != gone]
    assert [r.getMessage() for r in caplog.records if "deleted while the export ran" in r.getMessage()] == [
        f"external list {gone} was deleted while the export ran (GET /lists named it, then it was not found): "
        "not exported"]


def test_a_first_list_deleted_on_a_service_without_complete_asks_for_the_route_once_more(sample_archive, caplog):
    with serve(sample_archive, complete_route=False) as srv:
        client = make_client(srv)
        index = client.lists

        def index_then_deleted():
            got = index()
            srv.delete_list("501")
            return got

        client.lists = index_then_deleted
        src = WebSource(client, mode="full", workers=4)
        lists = [r.id for r in src.records({}) if r.kind == "list"]
        src.close()
        # 501's 404 says nothing of the route; 502, read alone next, finds it absent: not asked again
        assert srv.request_count("/lists/*/complete") == 2
    assert lists == ["502"]
    assert len([r for r in caplog.records if "/complete" in r.getMessage()]) == 1
