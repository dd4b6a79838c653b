"""The SQL sink's ``runs`` table: one row per export, its status and counts, and the runs whose
process died without finishing."""
from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from exporter import owner
from exporter.sinks import RunContext

from .writes import now

log = logging.getLogger("exporter.sql")


class RunRecords:
    """Mixed into ``SqlSink``: the run's row and its counts."""

    name: str
    _conn: sa.Connection
    _ctx: RunContext | None
    _fixed: dict[str, sa.Table]
    _counts: dict[str, int]
    _pending: dict[str, int]
    _failure: tuple[str, str] | None

    def _run_id(self) -> str:
        return self._ctx.run_id if self._ctx else ""

    def note_failure(self, status: str, message: str) -> None:
        """How the run failed (``failed`` or ``interrupted``) and why: recorded by ``close(False)``."""
        self._failure = (status, message)

    def _mark_abandoned(self) -> None:
        """Runs still ``running`` whose process is dead (killed outright, power lost): recorded as
        ``abandoned``. Runs of another host, or of a live process, are left as they are."""
        runs = self._fixed["runs"]
        rows = self._conn.execute(sa.select(runs.c.run_id, runs.c.owner).where(runs.c.status == "running")).all()
        for run_id, who in rows:
            if owner.is_dead(who):
                log.info("%s: run %s (process %s) stopped without finishing: recorded as abandoned",
                         self.name, run_id, who)
                self._conn.execute(runs.update().where(runs.c.run_id == run_id).values(
                    status="abandoned", message=f"the process ({who}) stopped without finishing (killed); "
                                                f"found by run {self._ctx.run_id if self._ctx else '?'}"))

    def _update_run(self, status: str, ended: bool = False, message: str | None = None) -> None:
        stmt = self._run_update(status, ended, message)
        if stmt is not None:
            self._conn.execute(stmt)

    def _run_update(self, status: str, ended: bool = False, message: str | None = None) -> sa.Update | None:
        """The statement recording the run's status and counts so far (None outside a run, and in
        a parallel export's workers)."""
        if self._ctx is None or self._ctx.worker is not None:
            return None
        counts = dict(self._counts)
        for k, n in self._pending.items():
            counts[k] = counts.get(k, 0) + n
        runs = self._fixed["runs"]
        values = {"status": status, "forms": counts.get("form", 0), "submissions": counts.get("submission", 0),
                      "media": counts.get("media", 0), "counts": json.dumps(counts, sort_keys=True)}
        if ended:
            values["ended_at"] = now()
            values["message"] = message
        return runs.update().where(runs.c.run_id == self._ctx.run_id).values(**values)

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add what a parallel export's workers wrote to this run's counts (recorded at close)."""
        for k, n in counts.items():
            self._counts[k] = self._counts.get(k, 0) + n

    def _count(self, kind: str, n: int = 1) -> None:
        self._pending[kind] = self._pending.get(kind, 0) + n
