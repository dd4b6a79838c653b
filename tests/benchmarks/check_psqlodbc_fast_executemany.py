"""Does pyodbc ``fast_executemany`` keep data intact through psqlODBC? (a check, not a test)

The SQL sink keeps ``fast_executemany`` off for ``postgresql+pyodbc`` because, with psqlODBC 13.02
(Debian 12), this script reports: bytea fails to bind (HY090), a 1 MB text fails (right
truncation at MaxLongVarcharSize) and timestamps silently lose their fractional seconds, while the
plain executemany path is exact. Run it again after a driver upgrade before turning it on::

    python tests/benchmarks/check_psqlodbc_fast_executemany.py ["DRIVER={PostgreSQL Unicode};..."]
"""
from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal

import pyodbc

CONN = "DRIVER={PostgreSQL Unicode};Servername=127.0.0.1;Port=5432;Database=test;UID=postgres;BoolsAsChar=0"
CASES = {  # column type -> values (NULL included)
    "integer": [1, None, -(2 ** 31)],
    "numeric(38,10)": [Decimal("12.5"), None, Decimal("-0.0000000001")],
    "text (unicode)": ["é🙂こんにちは 'q' \\", None, ""],
    "text (1 MB)": ["é" * (1 << 20), None],
    "date": [dt.date(2024, 2, 29), None, dt.date(1, 1, 1)],
    "time": [dt.time(8, 30, 1), None],
    "timestamp": [dt.datetime(2024, 2, 29, 8, 30, 15, 654321), None],
    "boolean": [True, None, False],
    "bytea": [b"\x00\xffdata", None],
}


def main() -> int:
    conn = pyodbc.connect(sys.argv[1] if len(sys.argv) > 1 else CONN)
    print("driver", conn.getinfo(pyodbc.SQL_DRIVER_NAME), conn.getinfo(pyodbc.SQL_DRIVER_VER))
    bad = 0
    for label, values in CASES.items():
        sql_type = label.split(" (")[0]
        for fast in (False, True):
            cur = conn.cursor()
            cur.execute(f"CREATE TEMP TABLE fe (i integer, v {sql_type})")
            cur.fast_executemany = fast
            try:
                cur.executemany("INSERT INTO fe VALUES (?, ?)", list(enumerate(values)))
                got = [r[0] for r in cur.execute("SELECT v FROM fe ORDER BY i").fetchall()]
                verdict = "ok" if got == values else "DATA CHANGED"
            except pyodbc.Error as e:
                verdict = f"error {e.args[0]}: {str(e.args[-1])[:60]}"
            conn.rollback()
            bad += fast and verdict != "ok"
            print(f"{label:16} fast_executemany={fast!s:5} {verdict}")
    print("fast_executemany is", "NOT safe" if bad else "safe", "with this driver")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
