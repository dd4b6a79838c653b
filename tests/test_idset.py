"""IdSet: a form's ids held compactly behaves as a frozenset of the same strings."""
from __future__ import annotations

import pickle

from exporter.deletions import doomed_ids
from exporter.idset import IdSet

# numbers, and every kind of id that is not one a number spells exactly: kept as text
MIXED = ["700001", "700000", "0", "42", "007", "-5", "+5", "1e3", " 12", "12 ", "٣٤", "abc", "",
         "123456789012345678", "1234567890123456789", "99999999999999999999999", "700001"]


def test_same_as_a_frozenset():
    ids = IdSet(MIXED)
    want = frozenset(MIXED)
    assert len(ids) == len(want)
    assert ids == want and want == ids
    assert set(ids) == want
    for sid in [*MIXED, "7", "70000", "700002", "07", "0042", "x", "1234567890123456780"]:
        assert (sid in ids) is (sid in want), sid
    assert 700001 not in ids and None not in ids  # ids are strings only
    assert ids - {"0", "42"} == want - {"0", "42"}
    assert isinstance(ids - {"0"}, IdSet)
    assert hash(ids) == hash(IdSet(reversed(MIXED)))


def test_builder_in_and_out_of_order():
    for order in (sorted(range(1, 5000)), list(range(5000, 0, -3)), [5, 3, 5, 1, 3]):
        b = IdSet.Builder()
        for n in order:
            b.add(str(n))
        ids = b.done()
        assert ids == frozenset(map(str, order))
        assert list(ids) == sorted(map(str, set(order)), key=int)


def test_compact_and_picklable():
    b = IdSet.Builder()
    for n in range(100_000):
        b.add(str(700_000 + n))
    ids = b.done()
    assert ids._numbers.itemsize * len(ids._numbers) == 800_000 and not ids._others
    back = pickle.loads(pickle.dumps(ids))
    assert back == ids and "799999" in back and "800000" not in back


def test_doomed_ids_reads_it_as_it_is():
    listing = IdSet(["1", "2", "x"])
    assert doomed_ids(["3", "2", "x", "y", "1"], listing) == ["3", "y"]
