"""The SQL sink's data steps: each kind of record of a batch into its tables, in the batch's
transaction (users, groups, lists, forms, submissions with their sub-form rows, their media and
vendor documents (``media.py``), deletions seen in a form's complete listing, ``export_state``
from checkpoints)."""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import AbstractSet, Any

import sqlalchemy as sa

from exporter.deletions import doomed_ids
from exporter.errors import SinkError
from exporter.model import (
    Account,
    Checkpoint,
    Document,
    ExternalList,
    Form,
    Group,
    Media,
    Submission,
    User,
    extra_json,
)
from exporter.sinks import RunContext

from .columns import DELETED_AT
from .dialects.base import Loader, Outcome, SqlProfile
from .loaders import as_rows, chunks
from .plans import FormPlan
from .rows import Rows, check_id, form_rows, records_rows
from .tables import LIST_ITEM_BASE_COLUMNS

log = logging.getLogger("exporter.sql")


@dataclass
class Prepared:
    """A batch made ready for writing by the CPU alone (``RecordWrites._prepare``)."""

    of: dict[str, list]  # record kind -> the batch's records of that kind, in order
    subs: OrderedDict[str, OrderedDict[str, Submission]]  # form id -> submission id -> its last version
    rows: dict[str, tuple[FormPlan, Rows]]  # form id -> (the plan they were made with, the rows)
    media: list[Media]  # the media to write (of the batch's last versions)
    media_rows: list[tuple] | None  # their index rows, when the records alone make them


def now() -> dt.datetime:
    """The time recorded in the tables: UTC, naive, whole seconds."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


class RecordWrites:
    """Mixed into ``SqlSink``: the data phase of ``write(batch)``."""

    name: str
    profile: SqlProfile
    capabilities: Any
    _conn: sa.Connection
    _ctx: RunContext | None
    _loader: Loader
    _policy: Any
    _fixed: dict[str, sa.Table]
    _plans: dict[str, FormPlan]
    _tables: dict[str, sa.Table]
    _op: Callable[[str], AbstractContextManager[None]]
    _begin: Callable[[], None]
    _commit_tx: Callable[[], None]
    commit: Callable[[], None]
    _count: Callable[..., None]
    _run_id: Callable[[], str]
    _schema_lock: Callable[[], None]
    _schema_unlock: Callable[[], None]
    _prepare_form: Callable[[Form], None]
    _prepare_list_items: Callable[[list[ExternalList]], None]
    _list_item_table: Callable[[], sa.Table]
    _write_media: Callable[..., None]
    _media_rows: Callable[[list[Media]], list[tuple] | None]
    _write_documents: Callable[[list[Document]], None]

    def _prepare(self, batch: Sequence[Any]) -> Prepared:
        """The batch's records grouped, and the rows that only take CPU to make: the submissions'
        of every form already planned, and the media index rows. ``SqlSink._write_once`` makes them
        before it waits for the previous batch's loads (on the background thread), so the two
        overlap; ``_write`` makes the rest (forms this batch plans) once the tables are planned."""
        of: dict[str, list] = {}
        for r in batch:
            group = of.get(r.kind)
            if group is None:
                group = of[r.kind] = []
            group.append(r)
        subs: OrderedDict[str, OrderedDict[str, Submission]] = OrderedDict()
        for r in of.get("submission", ()):
            subs.setdefault(r.form_id, OrderedDict())[r.id] = r
        rows = {}
        for form_id, by_id in subs.items():
            plan = self._plans.get(form_id)
            if plan is not None:
                rows[form_id] = (plan, records_rows(plan, self.profile, by_id.values())[0])
        media = of.get("media", [])
        if media and subs:
            media = self._current_media(media, subs)
        return Prepared(of, subs, rows, media, self._media_rows(media))

    def _write(self, batch: Sequence[Any], prepared: Prepared | None = None) -> None:
        p = prepared or self._prepare(batch)
        forms: list[Form] = p.of.get("form", [])
        lists: list[ExternalList] = p.of.get("list", [])
        if forms or lists:
            if self.capabilities.transactional_ddl:
                self._begin()
            else:
                # DDL commits implicitly here: finish the pending batch first, then plan alone
                self.commit()
                self._begin()
            self._schema_lock()
            for f in forms:
                self._prepare_form(f)
            if lists:
                self._prepare_list_items(lists)
            if not self.capabilities.transactional_ddl:
                self._commit_tx()
                self._schema_unlock()
        self._begin()
        acc: Account
        for acc in p.of.get("account", ()):
            if self._ctx is not None:  # the served times have no offset: record the zone with the run
                runs = self._fixed["runs"]
                self._conn.execute(runs.update().where(runs.c.run_id == self._ctx.run_id)
                                   .values(timezone=acc.timezone))
            if acc.form_ids is not None:
                self._mark_forms_gone(set(acc.form_ids))
        users: list[User] = p.of.get("user", [])
        groups: list[Group] = p.of.get("group", [])
        if users:
            self._write_users(users)
        if groups:
            self._write_groups(groups)
        if lists:
            self._write_lists(lists)
        if forms:
            self._write_forms(forms)
        for form_id, by_id in p.subs.items():
            self._write_submissions(form_id, list(by_id.values()), p.rows.get(form_id))
        if p.media:
            self._write_media(p.media, p.media_rows)
        docs: list[Document] = p.of.get("document", [])
        if docs:
            self._write_documents(docs)
        cps: list[Checkpoint] = p.of.get("checkpoint", [])
        for c in cps:
            if c.listing is not None and c.final:
                self._apply_deletions(c.form_id, c.listing)
        if cps:
            st = self._fixed["export_state"]
            with self._op("table export_state"):
                self._loader.upsert(st, "form_id", ("form_id", "cursor", "mode", "run_id", "updated_at"),
                                    [(c.form_id, c.cursor, c.mode, self._run_id(), now()) for c in cps])
            self._count("checkpoint", len(cps))

    def _mark_forms_gone(self, listed: set[str]) -> None:
        """Forms the service no longer lists get ``forms.deleted_at`` (their rows are kept);
        a form listed again is written again, which clears it."""
        forms = self._fixed["forms"]
        with self._op("table forms: forms gone from the service"):
            held = self._conn.execute(sa.select(forms.c.form_id).where(forms.c[DELETED_AT].is_(None))).scalars().all()
            gone = sorted(set(held) - listed)
            for chunk in chunks(gone, max(1, self.profile.max_params - 2)):
                self._conn.execute(forms.update().where(forms.c.form_id.in_(chunk)).values({DELETED_AT: now()}))
        if gone:
            log.warning("forms gone from the service, marked (their data is kept): %s", ", ".join(gone))

    def _apply_deletions(self, form_id: str, listing: AbstractSet[str]) -> None:
        """Rows of the form the complete ``listing`` lacks are deleted on the service: their main
        row gets ``deleted_at`` (soft) or, with ``--deletions hard``, the row, its sub-form rows
        and media rows go (and its vendor documents); a row listed again loses its mark. In the batch's transaction, after
        the check against ``--max-deletions`` (``exporter.deletions``)."""
        plan = self._plans.get(form_id)
        if plan is None:
            return
        main = self._tables[plan.main.parts[0]]
        key = main.c[plan.main.key_columns[0]]
        column = plan.main.deleted_column or DELETED_AT
        mark = main.c[column]
        # the ids are streamed (a server-side cursor where the driver has one): a form's whole
        # column of ids is never held, only those to delete, and the few marked ones
        held = 0

        def unmarked() -> Iterator[str]:
            nonlocal held
            ids = sa.select(key).where(mark.is_(None)).execution_options(yield_per=10_000)
            for chunk in self._conn.execute(ids).scalars().partitions():
                held += len(chunk)
                yield from chunk
        with self._op(f"form {form_id}: reading the ids held"):
            doomed = doomed_ids(unmarked(), listing)
            marked = self._conn.execute(sa.select(key).where(mark.is_not(None))).scalars().all()
        self._policy.check(form_id, len(doomed), held, self.name)
        back = [i for i in marked if i in listing]
        step = max(1, self.profile.max_params - 2)
        with self._op(f"form {form_id} table {main.name}: deletions"):
            for chunk in chunks(back, step):
                self._conn.execute(main.update().where(key.in_(chunk)).values({column: None}))
            if self._policy.mode == "soft":
                when = now()
                for chunk in chunks(doomed, step):
                    self._conn.execute(main.update().where(key.in_(chunk)).values({column: when}))
            else:
                gone = doomed + [i for i in marked if i not in listing]
                for tp in plan.subforms.values():
                    for part in reversed(tp.parts):
                        self._loader.delete_in(self._tables[part], tp.key_columns[0], gone)
                self._loader.delete_in(self._fixed["media"], "submission_id", gone, form_id=form_id)
                self._loader.delete_in(self._fixed["documents"], "submission_id", gone, form_id=form_id)
                for part in reversed(plan.main.parts):
                    self._loader.delete_in(self._tables[part], plan.main.key_columns[0], gone)
        if doomed or back:
            log.warning("form %s: %d submissions gone from the service (%s), %d back", form_id, len(doomed),
                        self._policy.mode, len(back))
            self._count("deleted", len(doomed))

    @staticmethod
    def _current_media(media: list[Media], subs: Mapping[str, Mapping[str, Submission]]) -> list[Media]:
        """Drop the media of an earlier version of a submission sent again in this batch (or whose
        media spilled over into it): its rows were just replaced by the last version's, so only
        the media that version references may be written."""
        refs: dict[tuple[str, str], tuple[set[int], tuple]] = {}
        # the refs of the batch's last versions: a media holding one of these very objects is its
        # submission's (a ref names its submission), and the usual case
        current = {id(r) for by_id in subs.values() for sub in by_id.values() for r in sub.media}
        out = []
        for m in media:
            ref = m.ref
            if id(ref) in current:
                out.append(m)
                continue
            key = (ref.form_id, ref.submission_id)
            sub = subs.get(key[0], {}).get(key[1])
            if sub is not None:
                wanted = refs.get(key)
                if wanted is None:
                    # sources hand over the very refs of the submission: identity first, equality
                    # (a hash of six fields) only for a ref that is not one of them
                    wanted = refs[key] = (set(map(id, sub.media)), sub.media)
                if id(ref) not in wanted[0] and ref not in wanted[1]:
                    continue
            out.append(m)
        return out

    def _write_users(self, users: list[User]) -> None:
        rows = [{"user_id": check_id(u.id, "user id", f"user {u.id}"), "login": u.login, "first_name": u.first_name,
                     "last_name": u.last_name, "email": u.email, "phone": u.phone,
                     "admin": int(u.admin) if self.profile.boolean_as_int else bool(u.admin),
                     "main_group_id": u.main_group_id, "create_time": u.create_time,
                     "extra_keys": extra_json(u.extra)} for u in users]
        with self._op("table users"):
            self._loader.upsert(self._fixed["users"], "user_id", *as_rows(rows))
        self._count("user", len(rows))

    def _write_groups(self, groups: list[Group]) -> None:
        rows = [{"group_id": check_id(g.id, "group id", f"group {g.id}"), "name": g.name, "parent_id": g.parent_id,
                 "extra_keys": extra_json(g.extra)} for g in groups]
        members = []
        for g in {g.id: g for g in groups}.values():
            seen = set()
            for role, ids in (("member", g.users), ("leader", g.leaders)):
                for uid in ids:
                    if (uid, role) not in seen:
                        seen.add((uid, role))
                        members.append((g.id, check_id(uid, "user id", f"group {g.id}"), role))
        with self._op("table user_groups"):
            self._loader.upsert(self._fixed["user_groups"], "group_id", *as_rows(rows))
        with self._op("table group_members"):
            gm = self._fixed["group_members"]
            self._loader.delete_in(gm, "group_id", [r["group_id"] for r in rows])
            self._loader.insert(gm, ("group_id", "user_id", "role"), members)
        self._count("group", len(rows))

    def _write_lists(self, lists: list[ExternalList]) -> None:
        rows = [{"list_id": check_id(x.id, "list id", f"list {x.id}"), "name": x.name, "class_": x.class_,
                     "update_time": x.update_time, "item_count": len(x.items), "extra_keys": extra_json(x.extra)}
                for x in lists]
        for r in rows:
            r["class"] = r.pop("class_")
        with self._op("table lists"):
            self._loader.upsert(self._fixed["lists"], "list_id", *as_rows(rows))
        table = self._list_item_table()
        split = [c.name for c in table.columns if c.name not in LIST_ITEM_BASE_COLUMNS]
        cols = [*LIST_ITEM_BASE_COLUMNS, *split]
        with self._op("table list_items"):
            self._loader.delete_in(table, "list_id", [r["list_id"] for r in rows])
            for lst in {x.id: x for x in lists}.values():
                buf: list[tuple] = []
                for item in lst.parsed_items():
                    row = dict.fromkeys(cols)
                    row.update(list_id=lst.id, item_index=item.index, line=item.line)
                    for lv_i, level in enumerate(item.levels, 1):
                        for c_i, col in enumerate(level, 1):
                            stem = f"l{lv_i}" if c_i == 1 else f"l{lv_i}_c{c_i}"
                            if f"{stem}_label" in row:
                                row[f"{stem}_label"] = col.label
                                row[f"{stem}_code"] = col.code
                    buf.append(tuple(row.values()))
                    if len(buf) >= self._loader.rows:
                        self._loader.insert(table, cols, buf)
                        buf = []
                self._loader.insert(table, cols, buf)
        self._count("list", len(rows))

    def _write_forms(self, forms: list[Form]) -> None:
        rows = [{"form_id": f.id, "name": f.name, "class_": f.class_, "update_time": f.update_time,
                     "table_name": self._plans[f.id].main.parts[0],
                     "definition": json.dumps(f.raw, ensure_ascii=False, sort_keys=True, default=str),
                     DELETED_AT: None}
                for f in forms]
        for r in rows:
            r["class"] = r.pop("class_")
        with self._op("table forms"):
            self._loader.upsert(self._fixed["forms"], "form_id", *as_rows(rows))
        self._count("form", len(rows))

    def _plan_of(self, form_id: str) -> FormPlan:
        plan = self._plans.get(form_id)
        if plan is None:
            raise SinkError("submissions arrived before the form definition in this run", context=f"form {form_id}")
        return plan

    def _write_submissions(self, form_id: str, subs: list[Submission], made: tuple[FormPlan, Rows] | None) -> None:
        """``made``: the rows ``_prepare`` made, used if made with the form's plan of now."""
        plan = self._plan_of(form_id)
        rows = made[1] if made is not None and made[0] is plan else records_rows(plan, self.profile, subs)[0]
        self._store_submissions(plan, [s.id for s in subs], rows)

    def _store_submissions(self, plan: FormPlan, ids: list[str], parts: Rows) -> None:
        """Upsert the rows of one form's submissions (``ids``) and replace their sub-form rows
        (rows per table part, ``parts``)."""
        loader = self._loader
        cols = form_rows(plan, self.profile).columns()
        form_id = plan.form.id
        key = plan.main.key_columns[0]
        # Submissions already stored lose their old sub-form and media rows. New ones have none:
        # sub-form rows reference the form table, and media rows are only ever written for a
        # submission written before them. Skipping the deletes on a fresh load matters: without
        # table statistics PostgreSQL runs the media delete as a scan of the form's whole index.
        # (Steps, in this order: run now, or on the loader's background thread.)
        outcome = Outcome()
        for part in plan.main.parts:
            with self._op(f"form {form_id} table {part}"):
                outcome = loader.upsert_step(self._tables[part], key, cols[part], parts[part], outcome)
        for tp in plan.subforms.values():
            for part in reversed(tp.parts):
                with self._op(f"form {form_id} table {part}"):
                    loader.delete_step(self._tables[part], tp.key_columns[0], ids, outcome)
        with self._op(f"form {form_id} table media"):
            loader.delete_step(self._fixed["media"], "submission_id", ids, outcome, form_id=form_id)
        for tp in plan.subforms.values():
            for part in tp.parts:
                with self._op(f"form {form_id} table {part}"):
                    loader.insert(self._tables[part], cols[part], parts.get(part, []))
        self._count("submission", len(ids))
