"""The web-service source: a whole account read through the REST v3 API as canonical records.

Stream order (see ``exporter.model``): ``Account``, users, groups, external lists (``GET /lists``
then ``GET /lists/{id}/complete`` each), then per form its ``Form``, its ``Submission``\\ s each followed
by its ``Media`` (``submissions.py``: bytes spooled to disk, hashed, size known) and, when asked for, its vendor
``Document``\\ s (``documents.py``; the form's layout pictures follow its first submission), and a
``Checkpoint``.

Three modes:

``full``
    ``data/all`` for the ids, then ``GET data/{id}`` per submission through a bounded pool of
    workers (media downloaded in the pool too); results come back in ``data/all`` order, and
    at most ``2 * workers`` submissions are in flight, so memory stays bounded.
``cursor``
    ``data/advanced`` for what was updated or created since ``cursor - overlap`` (flat records,
    ``format=basic`` so sub-forms come as rows), in bounded time windows (``windows.py``: never one
    unbounded answer). A form with no cursor in the state is read in full. The checkpoint is the
    greatest change time seen.
``unread``
    The server's read markers for one ``action``:
    ``data/unread/{action}/{limit}?includeupdated&format=basic`` (pages of ``page_size``, 100).
    Markers are set (``markasreadbyaction``) only by ``acknowledge(batch)``, which the pipeline
    calls after every sink committed that batch. See ``WebSource`` for how pages and
    acknowledgements interleave; the source never marks before commit and never loops forever.

A form's final ``Checkpoint`` carries its complete id listing (``data/all``) in full mode, and in
the other modes with ``check_deletions``: sinks take the ids they hold and it lacks as deleted on
the service (``exporter.deletions``). A listing that fails fails the run: no deletion.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from exporter.connectors.archive.source import minus_overlap

from exporter.errors import AuthError, ConfigError, NotFoundError
from exporter.idset import IdSet
from exporter.model import Account, Checkpoint, Form, Record
from exporter.records import parse_form, parse_group, parse_list, parse_user

from .adaptive import AIMD, MAX_WORKERS
from .client import DEFAULT_BASE_URL, KizeoClient
from .documents import FormDocuments, VendorDocuments
from .readahead import FormsAhead
from .submissions import SubmissionReader
from .tokens import EnvToken, FileToken, LoginToken, TokenProvider
from .windows import WINDOW_LIMIT, changed_since, clock_set_back, window_filter

log = logging.getLogger("exporter.kizeo")

MODES = ("full", "cursor", "unread")
PAGE_SIZE = 100  # records per unread page (real clients use 30 to 100)
READ_AHEAD = 1000  # records fetched ahead of the consumer at most (and 16 MiB of media); 0: none
SKIPPABLE = ("users", "groups", "lists")  # account-level parts a token may lack the rights for
MARK_CHUNK = 500  # ids per markasreadbyaction call


class WebSource:
    """Read a Kizeo Forms account through ``client``.

    ``forms`` limits the export to these form ids (checked at construction: an unknown id raises
    ``NotFoundError("unknown form id 'X'")`` before anything is written).

    Unread mode and acknowledgement: a page of at most ``unread_limit`` records is fetched per
    form; its records are yielded, then, when the page was full (more may be waiting), a
    ``Checkpoint`` closes the page and ``pending_ack`` becomes True. ``exporter.pipeline`` closes a
    batch at every Checkpoint, commits every sink and acknowledges before it asks for the next
    record, so pages follow one another within one run; any other driver should do the same
    whenever ``pending_ack`` is True. When the generator is resumed it asks for the next page
    only if every id of the previous page was acknowledged; otherwise it stops this form (the
    next run, e.g. from cron, continues where the markers are). So a pipeline that acknowledges
    only at its own batch boundaries still gets a correct, finite run. At most
    ``unread_max_pages`` pages are read per form per run, and a page that brings no new id stops
    the form (a service that does not honour the markers cannot make us loop).
    """

    def __init__(self, client: KizeoClient, *, forms: Sequence[str] | None = None, mode: str = "full",
                 action: str | None = None, overlap_seconds: int = 300, workers: int = 4,
                 timezone: str | None = None, unread_limit: int = PAGE_SIZE, unread_max_pages: int = 1000,
                 include_updated: bool = True, skip: Iterable[str] = (), window_limit: int = WINDOW_LIMIT,
                 read_ahead: int = READ_AHEAD, check_deletions: bool = False, vendor_pdf: bool = False,
                 vendor_exports: bool = False):
        if mode not in MODES:
            raise ConfigError(f"unknown incremental mode {mode!r} (use one of {', '.join(MODES)})")
        if mode == "unread" and not (action and action.strip()):
            raise ConfigError("unread mode needs an action name (the consumer whose read markers are used)")
        if workers < 1:
            raise ConfigError("workers must be at least 1")
        if unread_limit < 1:
            raise ConfigError("the unread page size must be at least 1")
        self.skip = parse_skip(skip)
        #: also read each form's complete id listing (``data/all``) in cursor and unread modes, so
        #: sinks see deletions (full mode always reads it)
        self.check_deletions = check_deletions
        self.window_limit = window_limit
        self.read_ahead = read_ahead
        self._reader: FormsAhead | None = None
        if timezone:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"unknown time zone {timezone!r} (use an IANA name like Europe/Paris)") from None
        self.client = client
        #: vendor documents (``--vendor-pdf``, ``--vendor-exports``) and layout pictures
        self.documents = VendorDocuments(client, pdf=vendor_pdf, exports=vendor_exports)
        #: each submission with its media and documents (``submissions.py``), on the pool's threads
        self.submissions = SubmissionReader(client, self.documents)
        self.mode = mode
        self.action = action.strip() if action else None
        self.overlap = int(overlap_seconds)
        self.workers = workers
        self.timezone = timezone
        self.unread_limit = unread_limit
        self.unread_max_pages = unread_max_pages
        self.include_updated = include_updated
        self.description = f"Kizeo Forms web service {client.description}"
        self._pool: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._acked: dict[str, set[str]] = collections.defaultdict(set)
        self._awaiting: dict[str, set[str]] = {}
        self.pending_ack = False
        self._forms_index: list[dict] | None = None
        self.forms = [str(f) for f in forms] if forms else None
        if self.forms:
            known = {str(f.get("id")) for f in self._index()}
            for fid in self.forms:
                if fid not in known:
                    raise NotFoundError(f"unknown form id {fid!r}", context=client.description)

    def __repr__(self) -> str:
        return f"WebSource({self.client.description!r}, mode={self.mode!r})"

    # ---- helpers -------------------------------------------------------------------------------
    def _index(self) -> list[dict]:
        if self._forms_index is None:
            self._forms_index = [f for f in self.client.list_forms() if isinstance(f, dict)]
        return self._forms_index

    def check(self) -> None:
        """Reach the service with the token (the forms list, needed anyway): called before any
        destination is opened, so an unreachable service or a refused token creates nothing."""
        self._index()

    def form_ids(self) -> list[str]:
        if self.forms:
            return list(self.forms)
        return [str(f["id"]) for f in self._index() if f.get("id") not in (None, "")]

    @property
    def lists_ids(self) -> bool:
        """Whether this run reads each form's complete id listing (``exporter.deletions``)."""
        return self.mode == "full" or self.check_deletions

    def listing(self, form_id: str) -> IdSet:
        """A form's complete id listing (``data/all``): the deletions check made before anything
        is written (the run reads it again with the form)."""
        return IdSet(_ids(self.client.list_data_ids(form_id)))

    def _executor(self) -> cf.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="kizeo")
        return self._pool

    def _ordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """``map(fn, items)`` on the pool, in order, with at most ``2 * workers`` in flight. Once
        ``items`` is exhausted the next form may start (``FormsAhead.asked_all``)."""
        window = 2 * self.workers
        pending: collections.deque[cf.Future] = collections.deque()
        it = iter(items)
        pool = self._executor()
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            if self._reader is not None:
                self._reader.asked_all()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()

    # ---- records -------------------------------------------------------------------------------
    def records(self, state: dict[str, str | None] | None = None, *, account: bool = True,
                forms: Iterable[str] | None = None) -> Iterator:
        """The account's records in order. ``account=False`` leaves out the account, users, groups
        and lists; ``forms`` replaces the form ids (parallel workers pull theirs from a queue).

        Users, groups and the lists index are asked for at once, with the first form's definition
        and id list; each list through the pool (the first alone). Each form is read ahead of
        the consumer (``readahead.FormsAhead``: requests go on while sinks write, and the next
        form starts while the last answers of the one before are in flight), except in unread mode
        (its beginning only) and for pulled forms (no look-ahead)."""
        return self._records(state or {}, account=account, forms=forms)

    def _records(self, state: dict[str, str | None], *, account: bool, forms: Iterable[str] | None) -> Iterator:
        if account:
            self._index()  # GET /forms first: a bad token fails there, so a refusal below is about rights
        pool = self._executor()
        reader = None
        if forms is None:
            if self._reader is not None:  # a second reading of the same source
                self._reader.close()
            reader = self._reader = FormsAhead(
                self.form_ids(), pool, lambda fid: self._prologue(fid, state.get(fid)),
                lambda fid, prologue: self._form_records(fid, state.get(fid), prologue),
                overlap=self.mode != "unread" and self.read_ahead > 0, size=max(1, self.read_ahead))
        if account:
            early = {part: pool.submit(read) for part, read in (
                ("users", self.client.users), ("groups", self.client.groups), ("lists", self.client.lists),
            ) if part not in self.skip}
            # no exported_at: the files a live export writes must not carry the wall clock (the same
            # data gives the same bytes); the run's time is in the runs table and the archive manifest
            yield Account(source=self.client.description, timezone=self.timezone, exported_at=None,
                          raw={"source": self.client.description, "timezone": self.timezone},
                          form_ids=None if self.forms else tuple(self.form_ids()))
            yield from self._scoped("users", lambda: map(parse_user, early["users"].result()))
            yield from self._scoped("groups", lambda: map(parse_group, early["groups"].result()))
            yield from self._scoped("lists", lambda: self._lists(early["lists"].result()))
        if forms is not None:  # pulled one by one (parallel workers share a queue): no look-ahead
            for fid in forms:
                yield from self._form_records(fid, state.get(fid), self._prologue(fid, state.get(fid)))
            return
        if reader is not None:
            yield from reader

    def _lists(self, index: list) -> Iterator:
        ids = [str(lid) for lid in (s.get("id") if isinstance(s, dict) else s for s in index) if lid not in (None, "")]
        first = 0  # read alone until one is found: it finds out whether the service has /lists/{id}/complete
        while first < len(ids):
            found = self._list(ids[first])
            first += 1
            if found is not None:
                yield found
                break
        yield from filter(None, self._ordered(self._list, ids[first:]))

    def _list(self, lid: str):
        """One external list, or None when it was deleted after ``GET /lists`` named it (404)."""
        try:
            return parse_list(self.client.get_list(lid))
        except NotFoundError:
            log.warning("external list %s was deleted while the export ran (GET /lists named it, then it was "
                        "not found): not exported", lid)
            return None

    def _scoped(self, part: str, read: Callable[[], Iterable]) -> Iterator:
        """The account's ``part`` (users, groups, lists), unless skipped. A token is issued for one
        user: a group leader's sees part of the account, and the service refuses it these routes.
        That refusal fails the run in one line that says how to go on knowingly."""
        if part in self.skip:
            log.warning("--skip %s: the account's %s are not exported", part, part)
            return
        try:
            yield from read()
        except AuthError as e:
            raise AuthError(
                f"the token lacks the rights for a full export ({e.context}: {e.message}); use a token "
                f"issued for an administrator, or --skip {part} to export without the account's {part}",
            ) from None

    def _prologue(self, fid: str, cursor: str | None) -> _Prologue:
        """A form's definition; when it is read in full, the ids of its submissions; the form's
        complete id listing when it was read (full mode, or ``check_deletions``); and what vendor
        documents its submissions get (its export templates read)."""
        form = parse_form(self.client.get_form(fid))
        incremental = self.mode == "unread" or (self.mode == "cursor" and bool(cursor))
        docs = self.documents.plan(form, newer_than=cursor if self.mode == "cursor" else None)
        if incremental and not self.check_deletions:
            return _Prologue(form, None, None, docs)
        listing = tuple(_ids(self.client.list_data_ids(fid)))
        return _Prologue(form, None if incremental else collections.deque(listing), IdSet(listing), docs)

    def _form_records(self, fid: str, cursor: str | None, prologue: _Prologue) -> Iterator:
        form, ids, listing, docs = prologue
        yield form
        if self.mode == "unread":
            yield from self._unread(form, cursor, listing, docs)
            return
        if ids is None:
            assert cursor is not None  # the ids are left unread only in cursor mode with a cursor
            since = minus_overlap(cursor, self.overlap + clock_set_back(cursor, self.timezone))
            log.info("form %s: reading submissions updated or created since %s", fid, since)
            results = self._ordered(lambda raw: self.submissions.with_media(form, raw, docs), self._changed_since(fid, since))
        else:
            log.info("form %s: %d submissions", fid, len(ids))
            results = self._ordered(lambda did: self.submissions.fetch(form, did, docs), _drain(ids))
        max_time = cursor
        pictures = docs.pictures
        gone: set[str] = set()
        for result in results:
            if isinstance(result, str):  # listed, then deleted before we asked for it
                gone.add(result)
                continue
            sub, medias = result
            ut = sub.update_time
            if ut and (max_time is None or ut > max_time):
                max_time = ut
            yield sub
            yield from medias
            if pictures:  # the form's layout pictures, once, through its first submission
                pictures = ()
                yield from self.documents.form_pictures(docs, sub.id)
        if gone and listing is not None:
            listing = listing - gone
        yield Checkpoint(form.id, max_time, self.mode, listing=listing, gone=frozenset(gone))

    def _changed_since(self, fid: str, since: str) -> Iterator[dict]:
        """Flat records changed since ``since``, read in bounded time windows (``windows.py``)."""
        def fetch(lo: str, hi: str | None) -> list[dict]:
            return self.client.advanced(fid, filters=window_filter(lo, hi), order=[{"col": "_update_time", "type": "asc"}],
                                        format="basic", retry_timeouts=False)

        for window in changed_since(fetch, since, limit=self.window_limit, describe=f"form {fid}"):
            rows = collections.deque(window)
            del window
            yield from _drain(rows)

    # ---- unread mode ---------------------------------------------------------------------------
    def _unread_action(self) -> str:
        if self.action is None:  # refused when the source is made; said again for the type checker
            raise ConfigError("unread mode needs an action name (the consumer whose read markers are used)")
        return self.action

    def _unread(self, form: Form, cursor: str | None, listing: IdSet | None,
                docs: FormDocuments) -> Iterator:
        fid = form.id
        action = self._unread_action()
        seen: set[str] = set()
        max_time = cursor
        pages = 0
        pictures = docs.pictures
        while True:
            page = self.client.unread(fid, action, self.unread_limit, self.include_updated)
            fresh = [r for r in page if isinstance(r, dict) and _rid(r) not in seen]
            if not fresh:
                if page:
                    log.warning("form %s: the service served again %d records already read in this run "
                                "(read markers not applied?); stopping this form", fid, len(page))
                break
            pages += 1
            ids = set()
            for sub, medias in self._ordered(lambda raw: self.submissions.with_media(form, raw, docs), fresh):
                seen.add(sub.id)
                ids.add(sub.id)
                ut = sub.update_time
                if ut and (max_time is None or ut > max_time):
                    max_time = ut
                yield sub
                yield from medias
                if pictures:
                    pictures = ()
                    yield from self.documents.form_pictures(docs, sub.id)
            if len(page) < self.unread_limit:
                break  # the last page: nothing more is waiting
            if pages >= self.unread_max_pages:
                log.info("form %s: read %d pages of unread records; the next run continues", fid, pages)
                break
            with self._lock:
                self._awaiting[fid] = ids
                self.pending_ack = True
            yield Checkpoint(fid, max_time, self.mode, final=False)  # page boundary: commit and acknowledge
            with self._lock:
                self.pending_ack = False
                waiting = self._awaiting.pop(fid, set()) - self._acked[fid]
            if waiting:
                log.info("form %s: %d records of the last page are not acknowledged yet; "
                         "the next run continues with the remaining unread records", fid, len(waiting))
                return
        yield Checkpoint(fid, max_time, self.mode, listing=listing)

    def acknowledge(self, batch: Iterable[Record]) -> None:
        """Mark the batch's submissions read for ``action`` (unread mode only). Call it only
        after every sink committed the batch."""
        if self.mode != "unread":
            return
        action = self._unread_action()
        by_form: dict[str, list[str]] = {}
        for r in batch:
            if r.kind == "submission":
                by_form.setdefault(r.form_id, []).append(r.id)
        for fid, ids in by_form.items():
            for i in range(0, len(ids), MARK_CHUNK):
                chunk = ids[i:i + MARK_CHUNK]
                self.client.mark_read(fid, action, chunk)
                with self._lock:
                    self._acked[fid].update(chunk)
            log.info("form %s: marked %d submissions read for action %r", fid, len(ids), self.action)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.client.close()


def build_web_source(base_url: str = DEFAULT_BASE_URL, *, token_env: str | None = None,
                     token_file: str | None = None, login_env: str | None = None,
                     forms: Sequence[str] | None = None, mode: str = "full", action: str | None = None,
                     overlap_seconds: int = 300, workers: int | str = 4, timezone: str | None = None,
                     ca_bundle: str | None = None, timeout: float = 120.0, page_size: int = PAGE_SIZE,
                     skip: Iterable[str] = (), check_deletions: bool = False, vendor_pdf: bool = False,
                     vendor_exports: bool = False, **client_options: Any) -> WebSource:
    """What the CLI calls: a ``WebSource`` over a ``KizeoClient`` whose token comes from
    ``token_env`` (a variable name), ``token_file`` (a path) or ``login_env`` (a prefix:
    ``PREFIX_USER``, ``PREFIX_PASSWORD``, ``PREFIX_COMPANY`` for the legacy ``POST /login``).
    With none of them, the token is read from ``$KIZEO_TOKEN``. ``workers="auto"``: up to 16
    threads, the requests in flight adapted by an ``AIMD`` gate (``adaptive.py``)."""
    limiter = None
    if workers == "auto":
        limiter, workers = AIMD(), MAX_WORKERS
    elif not isinstance(workers, int):
        raise ConfigError(f"--workers takes a number or 'auto' (not {workers!r})")
    given = [x for x in (token_env, token_file, login_env) if x]
    if len(given) > 1:
        raise ConfigError("give only one of --token-env, --token-file, --login-env")
    provider: TokenProvider
    if token_file:
        provider = FileToken(token_file)
    elif login_env:
        prefix = login_env.rstrip("_")
        provider = LoginToken(f"{prefix}_USER", f"{prefix}_PASSWORD", f"{prefix}_COMPANY")
    else:
        provider = EnvToken(token_env or "KIZEO_TOKEN")
    client = KizeoClient(provider, base_url=base_url, workers=workers, ca_bundle=ca_bundle,
                         read_timeout=timeout, limiter=limiter, **client_options)
    try:
        return WebSource(client, forms=forms, mode=mode, action=action, overlap_seconds=overlap_seconds,
                         workers=workers, timezone=timezone, unread_limit=page_size, skip=skip,
                         check_deletions=check_deletions, vendor_pdf=vendor_pdf, vendor_exports=vendor_exports)
    except BaseException:
        client.close()
        raise


class _Prologue(NamedTuple):
    form: Form
    ids: collections.deque | None  # the ids to read, when the form is read in full
    listing: IdSet | None  # its complete id listing, when read (``exporter.deletions``)
    docs: FormDocuments


def parse_skip(values: Iterable[str] | str) -> frozenset[str]:
    """``--skip``: names among ``SKIPPABLE``, as a comma-separated text or an iterable."""
    if isinstance(values, str):
        values = [values]
    names = {v.strip().lower() for item in values for v in str(item).split(",") if v.strip()}
    unknown = sorted(names - set(SKIPPABLE))
    if unknown:
        raise ConfigError(f"--skip takes {', '.join(SKIPPABLE)} (not {', '.join(unknown)})")
    return frozenset(names)


def _drain(dq: collections.deque) -> Iterator:
    """Pop items as they are consumed, so a long id list shrinks while we go."""
    while dq:
        yield dq.popleft()


def _rid(raw: dict) -> str:
    return str(raw.get("_id", raw.get("id")))


def _ids(rows: Iterable[Any]) -> Iterator[str]:
    for r in rows:
        v = r.get("id", r.get("_id")) if isinstance(r, dict) else r
        if v not in (None, ""):
            yield str(v)
