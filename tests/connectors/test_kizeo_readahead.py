"""``readahead.FormsAhead``: the next form is read while the last answers of the one before come,
within one budget, in order; without overlap, one form after the other."""
from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import pytest
from exporter.connectors.kizeo.readahead import FormsAhead

from exporter.model import Checkpoint


def _forms(overlap: bool, size: int = 100):
    started = {"A": threading.Event(), "B": threading.Event(), "C": threading.Event()}
    waited: dict[str, bool] = {}
    pool = cf.ThreadPoolExecutor(2)
    ahead: FormsAhead

    def read(fid: str, begun: str):
        started[fid].set()
        assert begun == f"begun {fid}"
        yield f"{fid}1"
        ahead.asked_all()  # as WebSource._ordered does once every submission is asked for
        nxt = {"A": "B", "B": "C"}.get(fid)
        if nxt:  # the last answers of this form come only once the next form is being read
            waited[fid] = started[nxt].wait(2 if overlap else 0.2)
        yield f"{fid}2"
        yield Checkpoint(fid, None, "full")

    ahead = FormsAhead(["A", "B", "C"], pool, lambda fid: f"begun {fid}", read, overlap=overlap, size=size)
    return ahead, waited, pool


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_form_starts_when_the_one_before_has_asked_for_everything(overlap):
    ahead, waited, pool = _forms(overlap)
    got = [r if isinstance(r, str) else ("cp", r.form_id) for r in ahead]
    assert got == ["A1", "A2", ("cp", "A"), "B1", "B2", ("cp", "B"), "C1", "C2", ("cp", "C")]
    # with overlap, B was started while A's last records were still to come; without, never before
    assert waited == {"A": overlap, "B": overlap}
    pool.shutdown()


def test_the_readers_share_one_budget():
    pool = cf.ThreadPoolExecutor(2)

    def read(fid: str, begun: str):
        for i in range(50):
            if fid == "A" and i == 1:
                ahead.asked_all()
            yield f"{fid}{i}"

    ahead = FormsAhead(["A", "B"], pool, lambda fid: fid, read, overlap=True, size=10)
    it = iter(ahead)
    assert next(it) == "A0"
    time.sleep(0.3)  # both readers fill what the budget allows, then wait
    assert ahead.budget.count <= 10 + 1  # (+1: a reader whose own queue is empty may always add one)
    rest = list(it)
    assert rest == [f"A{i}" for i in range(1, 50)] + [f"B{i}" for i in range(50)]
    assert ahead.budget.count == 0
    pool.shutdown()


def test_an_error_comes_at_its_place_and_close_stops_the_readers():
    pool = cf.ThreadPoolExecutor(2)

    def begin(fid: str):
        if fid == "B":
            raise KeyError("B is gone")
        return fid

    def read(fid: str, begun: str):
        yield f"{fid}1"
        ahead.asked_all()
        yield f"{fid}2"

    ahead = FormsAhead(["A", "B", "C"], pool, begin, read, overlap=True, size=10)
    it = iter(ahead)
    assert [next(it), next(it)] == ["A1", "A2"]
    with pytest.raises(KeyError, match="B is gone"):
        next(it)
    ahead.close()
    assert ahead.budget.count == 0
    pool.shutdown()


def test_small_forms_follow_one_another_while_the_consumer_is_busy_up_to_the_limit():
    pool = cf.ThreadPoolExecutor(2)
    started = {f: threading.Event() for f in "ABCDEFG"}

    def read(fid: str, begun: str):
        started[fid].set()
        ahead.asked_all()  # small forms: everything asked for at once
        yield f"{fid}1"

    ahead = FormsAhead(list("ABCDEFG"), pool, lambda fid: fid, read, overlap=True, size=100, ahead=3)
    it = iter(ahead)
    assert next(it) == "A1"  # the consumer is busy with A: B, C and D are read meanwhile, not E
    assert all(started[f].wait(2) for f in "BCD")
    assert not started["E"].wait(0.2)
    assert list(it) == ["B1", "C1", "D1", "E1", "F1", "G1"]
    pool.shutdown()
