"""The fast JSON decoder gives exactly what ``json.loads`` gives, whatever orjson refuses."""
import json
import shutil

import pytest
from exporter.connectors.archive.reader import ArchiveReader

from exporter import fastjson
from exporter.errors import ArchiveError

CASES = [
    b'{"a": 1, "b": [true, false, null], "c": "\xc3\xa9t\xc3\xa9", "d": 1.5e3}',
    b'{"big": 123456789012345678901234567890}',  # beyond 64 bits: orjson would give a float
    b'{"big": 18446744073709551616, "neg": -9223372036854775809}',
    b'{"i64": 9223372036854775807, "f": 12345678901234567890.5}',
    b'{"nan": NaN, "inf": Infinity}',  # not JSON, but json.loads reads it
    b'{"lone": "\\ud800"}',  # a lone surrogate escape
    b'{"dup": 1, "dup": 2}',  # the last one wins, as in json.loads
    b'"\\u0000 \\t \\\\"',
]


@pytest.mark.parametrize("doc", CASES)
def test_same_result_as_json(doc):
    want = json.loads(doc.decode("utf-8"))
    got = fastjson.loads(doc)
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    assert fastjson.loads(doc.decode("utf-8")) == got or doc.startswith(b'{"nan"')


@pytest.mark.parametrize("doc", [b'{"a": ', b"\xff\xfe{}", b"{'a': 1}", b""])
def test_invalid_raises_value_error(doc):
    with pytest.raises(ValueError):
        fastjson.loads(doc)


def test_archive_names_the_bad_line(sample_archive, tmp_path):
    arch = tmp_path / "a"
    shutil.copytree(sample_archive, arch)
    users = arch / "users.jsonl"
    good = users.read_bytes().splitlines()
    users.write_bytes(good[0] + b"\n\n" + b'{"id": \xff}\n')
    it = ArchiveReader(arch).users_raw()
    assert next(it) == json.loads(good[0])
    with pytest.raises(ArchiveError, match="users.jsonl line 3 is not valid JSON"):
        next(it)
