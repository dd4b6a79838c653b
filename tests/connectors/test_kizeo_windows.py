"""Reading what changed in bounded time windows (``connectors/kizeo/windows.py``), first against an
in-memory service with the fake's own filters, then end to end against the fake over HTTP."""
from __future__ import annotations

import datetime as dt

import pytest
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.kizeo import WebSource
from exporter.connectors.kizeo.http_errors import AnswerTimeout
from exporter.connectors.kizeo.windows import change_time, changed_since, window_filter

from exporter.testing.fake_data import flatten, matches
from exporter.testing.fake_server import Faults
from tests.connectors.conftest_kizeo import big_form_submissions, build_big_form_archive, make_client, serve

NOW = lambda: dt.datetime(2026, 12, 5, 1, 0, 0)  # noqa: E731 - a fixed local clock


class Service:
    """``data/advanced`` in memory: the fake's filters, and a timeout on an answer over ``max_answer``."""

    def __init__(self, records, max_answer):
        self.records = records
        self.max_answer = max_answer
        self.windows: list[tuple[str, str | None, int]] = []  # (lo, hi, records answered)

    def __call__(self, lo, hi):
        rows = [r for r in self.records if all(matches(r, f) for f in window_filter(lo, hi))]
        if len(rows) > self.max_answer:
            self.windows.append((lo, hi, -1))
            raise AnswerTimeout("HTTP 504: Gateway Time-out")
        self.windows.append((lo, hi, len(rows)))
        return rows


def _flat(n=50):
    return [flatten(s) for s in big_form_submissions(n)]


@pytest.mark.parametrize("since", ["2020-01-01 00:00:00", "2026-04-01 08:00:00", "2026-04-01 10:20:00"])
def test_every_change_comes_exactly_once_in_windows_the_service_can_answer(since):
    records = _flat()
    svc = Service(records, max_answer=10)
    got = [r["_id"] for w in changed_since(svc, since, now=NOW) for r in w]
    expected = sorted((r for r in records if change_time(r) >= since), key=change_time)
    assert sorted(got) == sorted(r["_id"] for r in expected) and len(got) == len(set(got))
    assert len(got) > 10 and all(n <= 10 for _, _, n in svc.windows)
    answered = [(lo, hi) for lo, hi, n in svc.windows if n >= 0]
    # the windows answered follow one another without gap or overlap, the last one open-ended
    assert answered[0][0] == since and answered[-1][1] is None
    assert all(a[1] == b[0] for a, b in zip(answered, answered[1:], strict=False))
    # never-edited submissions (empty _update_time) and edited ones are both there
    ids = set(got)
    assert any(r["_update_time"] == "" and r["_id"] in ids for r in records)
    assert any(r["_update_time"] > r["_create_time"] and r["_id"] in ids for r in records)


def test_records_on_a_window_border_come_once_in_the_later_window():
    records = _flat()
    svc = Service(records, max_answer=10)
    windows = list(changed_since(svc, "2026-04-01 08:00:00", now=NOW))
    answered = [(lo, hi) for lo, hi, n in svc.windows if n >= 0]
    borders = {hi for _, hi in answered if hi}
    # move a few submissions exactly onto borders and read again: each still once
    for r, border in zip(records[::7], sorted(borders), strict=False):
        r["_update_time"] = border
    svc = Service(records, max_answer=10)
    got = [r["_id"] for w in changed_since(svc, "2026-04-01 08:00:00", now=NOW) for r in w]
    assert sorted(got) == sorted(r["_id"] for r in records) and len(got) == len(set(got))
    assert windows  # the first read was windowed too


def test_a_window_over_the_limit_is_halved_and_sparse_windows_grow():
    records = _flat()
    svc = Service(records, max_answer=10**6)
    windows = list(changed_since(svc, "2026-04-01 08:00:00", limit=8, now=NOW))
    assert max(len(w) for w in windows) <= 8
    assert sorted(r["_id"] for w in windows for r in w) == sorted(r["_id"] for r in records)


def test_one_second_that_still_times_out_fails_in_one_line():
    same = [{"_id": str(i), "_create_time": "2026-04-01 08:00:00", "_update_time": ""} for i in range(5)]
    with pytest.raises(AnswerTimeout, match="even for the submissions of one second"):
        list(changed_since(Service(same, max_answer=2), "2026-04-01 08:00:00", now=NOW))


def test_cursor_mode_reads_a_big_form_in_windows_against_the_fake(tmp_path):
    archive = build_big_form_archive(tmp_path / "big", 50)
    with serve(archive, Faults(max_answer=10)) as srv:
        src = WebSource(make_client(srv), mode="cursor", workers=3)
        recs = list(src.records({"77": "2026-04-01 08:00:00"}))
        src.close()
        assert srv.request_count("/forms/77/data/advanced") > 5
    web = [(r.id, r.values, r.subforms) for r in recs if r.kind == "submission"]
    archived = {r.id: (r.id, r.values, r.subforms) for r in ArchiveSource(archive).records({}) if r.kind == "submission"}
    assert len(web) == 50 and sorted(web) == sorted(archived.values())
    assert [r.cursor for r in recs if r.kind == "checkpoint"] == [max(
        s["update_time"] or s["create_time"] for s in big_form_submissions(50))]


def test_cursor_mode_sees_a_submission_never_edited(rich_archive):
    # "4" was created on 2026-03-04 12:00:00 and never edited: its _update_time is empty
    with serve(rich_archive) as srv:
        src = WebSource(make_client(srv), mode="cursor", forms=["42"], overlap_seconds=0)
        subs = [r.id for r in src.records({"42": "2026-03-04 11:00:00"}) if r.kind == "submission"]
        src.close()
    assert subs == ["4", "2", "5"]


def test_a_recent_cursor_is_one_request_an_old_one_starts_with_a_week():
    records = _flat()
    svc = Service(records, max_answer=10**6)
    list(changed_since(svc, "2026-12-01 00:00:00", now=NOW))
    assert [(lo, hi) for lo, hi, _ in svc.windows] == [("2026-12-01 00:00:00", None)]
    svc = Service(records, max_answer=10**6)
    list(changed_since(svc, "2026-01-01 00:00:00", now=NOW))
    assert svc.windows[0][:2] == ("2026-01-01 00:00:00", "2026-01-08 00:00:00")
    assert len(svc.windows) <= 7 and svc.windows[-1][1] is None  # sparse: each window doubles


@pytest.mark.parametrize("since", ["2026-12-06 00:59:59", "2026-12-08 00:00:00"])
def test_a_cursor_past_the_horizon_that_times_out_fails_instead_of_looping(since):
    """A cursor a day or more ahead of the local clock (a wrong clock, an account far east): the
    open window times out and cannot be bounded. It fails; it used to ask again forever."""
    calls = []

    def fetch(lo, hi):
        calls.append((lo, hi))
        if len(calls) > 50:
            raise AssertionError(f"still asking after {len(calls)} requests: {calls[-3:]}")
        raise AnswerTimeout("HTTP 504: Gateway Time-out")

    with pytest.raises(AnswerTimeout, match="one second"):
        list(changed_since(fetch, since, now=NOW))


def test_a_cursor_past_the_horizon_with_a_full_answer_keeps_it_instead_of_looping():
    since = "2026-12-07 00:00:00"
    rows = [{"_id": str(i), "_create_time": since, "_update_time": ""} for i in range(5)]
    calls = []

    def fetch(lo, hi):
        calls.append((lo, hi))
        assert len(calls) <= 50, "still asking"
        return list(rows)

    got = [r["_id"] for w in changed_since(fetch, since, limit=2, now=NOW) for r in w]
    assert sorted(got) == [str(i) for i in range(5)] and calls == [(since, None)]


@pytest.mark.parametrize(("cursor", "now", "back"), [
    # Paris sets its clock back from 03:00 to 02:00 on 2026-10-25 (01:00 UTC)
    ("2026-10-25 02:30:00", "2026-10-25T03:00:00+00:00", 3600),  # 02:10 comes again after the cursor
    ("2026-10-25 01:30:00", "2026-10-26T00:00:00+00:00", 3600),  # 02:00-03:00 twice, 1 h after it
    ("2026-10-25 02:30:00", "2026-10-25T00:45:00+00:00", 0),     # not set back yet
    ("2026-10-24 12:00:00", "2026-10-26T00:00:00+00:00", 0),     # long before: its wall time does not come again
    ("2026-03-29 01:30:00", "2026-03-30T00:00:00+00:00", 0),     # spring: set forward, nothing repeats
])
def test_a_cursor_before_the_clock_is_set_back_reads_the_repeated_hour(cursor, now, back):
    from exporter.connectors.kizeo.windows import clock_set_back

    assert clock_set_back(cursor, "Europe/Paris", dt.datetime.fromisoformat(now)) == back
    assert clock_set_back(cursor, None, dt.datetime.fromisoformat(now)) == 0
