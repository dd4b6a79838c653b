"""What a run imports: a destination's declaration (read to choose the sink of a URL) imports no
driver, so an export to files never loads SQLAlchemy (~0.15 s of CPU and ~15 MiB at every start)."""
from __future__ import annotations

import subprocess
import sys


def test_choosing_the_files_destination_imports_no_database_layer(tmp_path):
    code = ("import sys; from exporter.registry import entry_for, SINKS; entry_for(sys.argv[1]); SINKS.all();"
            "print(sorted(m for m in sys.modules if m == 'sqlalchemy' or m.startswith('exporter.connectors.sql.dialects')))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == "[]"
