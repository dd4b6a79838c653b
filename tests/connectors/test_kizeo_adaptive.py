"""``--workers auto``: the AIMD gate (deterministic, with a fake clock) and a run against the fake
service that rate-limits."""
from __future__ import annotations

import threading

import pytest
from exporter.connectors.archive.source import ArchiveSource
from exporter.connectors.kizeo import WebSource
from exporter.connectors.kizeo.adaptive import AIMD

from exporter.errors import RateLimitError, TransientSourceError
from exporter.testing.fake_server import Faults
from tests.connectors.conftest_kizeo import make_client, serve


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _round(gate: AIMD, clock: Clock, capacity: int, latency: float = 0.02) -> None:
    """One round of ``gate.limit`` requests on a service that answers ``capacity`` at a time in
    ``latency`` seconds each: throughput grows with the limit up to the capacity."""
    n = gate.limit
    tickets = [gate.acquire() for _ in range(n)]
    clock.t += latency * -(-n // capacity)  # in waves of ``capacity``
    for t in tickets:
        gate.release(t)


def test_limit_grows_while_throughput_grows_then_holds():
    clock = Clock()
    gate = AIMD(start=2, clock=clock)
    seen = []
    for _ in range(30):
        _round(gate, clock, capacity=6)
        seen.append(gate.limit)
    # slow start: doubled while each round is faster; 8 brings nothing over 4: from 4, one by one
    assert seen[:5] == [4, 8, 5, 6, 7]
    assert seen[-1] == 7 and seen[5:] == [7] * 25  # 7 brings nothing over 6 (one probe), then it holds


def test_slow_start_reaches_the_top_in_two_rounds_and_ends_with_congestion():
    clock = Clock()
    gate = AIMD(clock=clock)
    _round(gate, clock, capacity=100)
    _round(gate, clock, capacity=100)
    assert gate.limit == 16  # 4, 8, 16
    gate.release(gate.acquire(), congested=True)
    assert gate.limit == 8
    seen = []
    for _ in range(3):
        _round(gate, clock, capacity=100)
        seen.append(gate.limit)
    assert seen == [9, 10, 11]  # after congestion, one more per round only


def test_limit_never_leaves_its_bounds():
    clock = Clock()
    gate = AIMD(clock=clock)
    for _ in range(40):
        _round(gate, clock, capacity=100)
    assert gate.limit == 16
    for _ in range(10):
        gate.release(gate.acquire(), congested=True)
    assert gate.limit == 1


def test_one_congestion_sign_halves_once_for_the_requests_then_in_flight():
    clock = Clock()
    gate = AIMD(start=8, clock=clock)
    tickets = [gate.acquire() for _ in range(8)]
    for t in tickets[:5]:  # five 429s from requests sent together: one halving
        gate.release(t, congested=True)
    assert gate.limit == 4 and gate.decreases == 1
    for t in tickets[5:]:
        gate.release(t)
    gate.release(gate.acquire(), congested=True)  # a later one halves again
    assert gate.limit == 2


def test_slot_counts_transient_failures_as_congestion_and_waits_at_the_limit():
    clock = Clock()
    gate = AIMD(start=2, clock=clock)
    with pytest.raises(RateLimitError), gate.slot():
        raise RateLimitError("429")
    assert gate.limit == 1 and gate.in_flight == 0
    with pytest.raises(ValueError), gate.slot():  # not a congestion sign: an answer, counted as done
        raise ValueError("x")
    assert gate.decreases == 1 and gate.in_flight == 0
    held = [gate.acquire() for _ in range(gate.limit)]
    entered = threading.Event()

    def second():
        with gate.slot():
            entered.set()

    th = threading.Thread(target=second)
    th.start()
    assert not entered.wait(0.1)  # at the limit: the next one waits for a place
    gate.release(held[0])
    assert entered.wait(5)
    th.join()
    for t in held[1:]:
        gate.release(t)
    assert gate.in_flight == 0


def test_bad_bounds():
    with pytest.raises(ValueError):
        AIMD(low=0)
    with pytest.raises(ValueError):
        AIMD(start=20)


@pytest.mark.network
def test_workers_auto_against_a_rate_limiting_fake(sample_archive):
    from exporter.connectors.kizeo.adaptive import MAX_WORKERS

    gate = AIMD()
    with serve(sample_archive, Faults(rate_limit_every=25, retry_after=0, latency=0.005)) as srv:
        src = WebSource(make_client(srv, limiter=gate), workers=MAX_WORKERS)
        web = [(r.kind, getattr(r, "id", None)) for r in src.records({})]
        src.close()
        assert srv.request_count() > 100
    archived = [(r.kind, getattr(r, "id", None)) for r in ArchiveSource(sample_archive).records({})
                if r.kind != "checkpoint"]
    assert [k for k in web if k[0] != "checkpoint"] == archived  # everything, in order, despite the 429s
    # it grew past its start (4) while the answers came faster, and halved on the 429s
    assert gate.decreases >= 1 and gate.peak > 4 and 1 <= gate.limit <= 16
    assert isinstance(RateLimitError("x"), TransientSourceError)


def test_login_inside_a_gated_request_does_not_wait_for_a_place(rich_archive, monkeypatch):
    """A legacy login happens inside a request that holds a place (``_send_once`` asks the
    provider for a token); had the login waited for a place of its own, a gate with every place
    taken (here its one place, as after a few halvings) would have waited for itself forever."""
    from exporter.connectors.kizeo import KizeoClient
    from exporter.connectors.kizeo.tokens import LoginToken

    monkeypatch.setenv("KZ_USER", "zoe")
    monkeypatch.setenv("KZ_PASSWORD", "pw")
    monkeypatch.setenv("KZ_COMPANY", "ACME")
    with serve(rich_archive, login=("zoe", "pw", "ACME")) as srv:
        gate = AIMD(low=1, start=1, high=1)
        c = KizeoClient(LoginToken("KZ_USER", "KZ_PASSWORD", "KZ_COMPANY"), base_url=srv.base_url, limiter=gate)
        got: list = []
        t = threading.Thread(target=lambda: got.append(c.list_forms()), daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive(), "the request waited for the login, which waited for the request's place"
        assert got and got[0] and gate.in_flight == 0
        c.close()
