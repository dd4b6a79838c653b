"""Encrypted, verified backups of an account, with retention.

A backup is a full account archive: a zip written by the archive sink (``archive:///...zip``) from
the source, or, when the source is a whole archive, that archive's files copied into the zip as they
are (``connectors/archive/zipcopy.py``: nothing parsed or written again, the same manifest). It is
checked after writing (every file re-hashed and the counts recounted: ``exporter verify``'s
logic), encrypted with age to public keys only (``exporter.agecrypt``: the machine writing backups
cannot read them; ``age -d`` decrypts them without this tool) and stored as
``<account>-<UTC time>.zip.age`` on any destination that holds files, through the remote interface
(a local folder, SFTP, FTP/FTPS, Dropbox, SharePoint, S3, Azure Blob): published whole or not at
all, then checked on the destination (its checksum when it keeps one, otherwise read back and
re-hashed). Only then is it recorded as verified, and only then are old backups pruned by the
retention policy (``exporter.retention``: restic's ``forget`` rules; the newest good backup is
never removed).

Everything streams: the archive is written to a spool folder (``<state_dir>/<account>/spool``,
mode 0700), encrypted from there and uploaded in parts; memory stays flat, the disk holds the zip
and its encrypted copy at most.

State per account, in ``<state_dir>/<account>/`` (``exporter.locks.account_dir``):
``backups.json``, the index (per backup: name, destination and its options (references to
secrets, never secrets), time, size and sha256 of the stored file, size, sha256, file count and
counts of the archive inside, recipients, verified and when); ``lock``, held by whoever changes
the index (a backup, a prune, a verify), so two never run at once.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Iterable, cast

from .agecrypt import decrypt_file, encrypt_file, parse_recipients
from .errors import ArchiveError, ConfigError, SinkError
from .fsutil import atomic_write
from .locks import AccountLock, account_dir
from .retention import Retention, select
from .secrets import mask

if TYPE_CHECKING:
    from .agecrypt import Digest
    from .connectors.remote.transfer import Transfer
    from .pipeline import Progress
    from .sinks import Sink
    from .sources import Source

log = logging.getLogger("exporter.backups")

INDEX_NAME = "backups.json"
INDEX_FORMAT = "exporter-backups-index"
SUFFIX = ".zip.age"


@dataclass(frozen=True)
class BackupConfig:
    """Where and how an account's backups are made (the jobs file's ``backup = {...}``)."""

    account: str
    state_dir: Path
    to: str  # a folder, file:///..., sftp://, ftp(s)://, dropbox:///, sharepoint://, s3://, azure://
    options: Mapping[str, Any] = field(default_factory=dict)  # the destination's options (secrets by reference)
    recipients: Sequence[str] = ()  # age1... / ssh-... public keys
    retention: Retention | None = None


# ---- the index ---------------------------------------------------------------------------------
def index_path(state_dir: str | os.PathLike, account: str) -> Path:
    return account_dir(state_dir, account) / INDEX_NAME


def load_index(state_dir: str | os.PathLike, account: str) -> list[dict]:
    """The account's backups, oldest first ([] before the first one)."""
    p = index_path(state_dir, account)
    try:
        doc = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise ConfigError(f"the backups index {p} is unreadable ({e}); restore it from a copy") from None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT or not isinstance(doc.get("backups"), list):
        raise ConfigError(f"{p} is not a backups index")
    return doc["backups"]


def audit_fields(entry: dict) -> dict:
    """What an audit line says of a backup (its index entry): its name and destination, the size
    and SHA-256 of the stored file and of the archive inside, the archive's file count and counts."""
    archive = entry.get("archive") or {}
    return {"name": entry.get("name"), "destination": entry.get("destination"), "bytes": entry.get("size"),
            "sha256": entry.get("sha256"), "archive_bytes": archive.get("size"), "archive_sha256": archive.get("sha256"),
            "files": archive.get("files"), "counts": archive.get("counts") or {}}


def save_index(state_dir: str | os.PathLike, account: str, entries: list[dict]) -> None:
    doc = {"format": INDEX_FORMAT, "version": 1, "account": account,
           "backups": sorted(entries, key=lambda e: e["created"])}
    with atomic_write(index_path(state_dir, account), "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")


def find(entries: list[dict], which: str | None) -> list[dict]:
    """``latest`` (the newest verified one; default), ``all``, or one backup by id or name."""
    which = which or "latest"
    if which == "all":
        return list(entries)
    if which == "latest":
        good = [e for e in entries if e.get("verified")]
        if not good:
            raise ConfigError("no verified backup in the index")
        return [max(good, key=lambda e: e["created"])]
    hits = [e for e in entries if which in (e["id"], e["name"])]
    if not hits:
        near = ", ".join(e["id"] for e in entries[-5:]) or "none"
        raise ConfigError(f"no backup {which!r} in the index (latest: {near})")
    return hits


def _now(now: dt.datetime | None) -> dt.datetime:
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC) if now.tzinfo else now.replace(tzinfo=dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(entry: dict) -> dt.datetime:
    return dt.datetime.strptime(entry["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def new_spool(state_dir: Path, account: str) -> Path:
    """The account's scratch folder, emptied first (we hold the lock: what is there is a dead
    run's)."""
    spool = account_dir(state_dir, account) / "spool"
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(mode=0o700)
    return spool


def store_options(url: str, options: Mapping[str, Any]) -> dict:
    """The options of a backup destination, checked and typed: those its remote reads and the
    transfer's (retries...)."""
    from .connectors.remote.catalog import TRANSFER_OPTIONS
    from .options import parse
    from .registry import remote_for

    remote = remote_for(url)
    names = {o.name for o in remote.options}
    declared = remote.options + tuple(o for o in TRANSFER_OPTIONS if o.name not in names)
    for key in options:
        if key not in {o.name for o in declared}:
            raise ConfigError(f"option {key} is not read by the backup destination {mask(url)} ({remote.key} reads: "
                              f"{', '.join(sorted(o.name for o in declared))})")
    return parse(declared, options)


def transfer_for(url: str, options: Mapping[str, Any], run_id: str = "") -> Transfer:
    from .connectors.remote.transfer import Transfer
    from .registry import create_remote

    typed = store_options(url, options)
    transfer = Transfer(create_remote(url, typed, strict=False), typed)
    transfer.run_id = run_id
    return transfer


class HashingFile:
    """A download target that hashes what it is given (and writes it to ``fh`` when given); a
    retried download starts it again from 0."""

    def __init__(self, fh: IO[bytes] | None = None) -> None:
        import hashlib

        self._new = hashlib.sha256
        self.fh = fh
        self.seek(0)

    def tell(self) -> int:
        return self.size

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if pos != 0 or whence != 0:
            raise ValueError("a hashing download restarts from 0 only")
        self.h, self.size = self._new(), 0
        if self.fh is not None:
            self.fh.seek(0)
        return 0

    def truncate(self, size: int | None = None) -> int:
        if self.fh is not None:
            self.fh.truncate()
        return 0

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        if self.fh is not None:
            self.fh.write(data)
        return len(data)

    def writelines(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def as_target(self) -> BinaryIO:
        """This object as the binary file a download writes to: the remotes' ``get`` only write,
        ``tell`` and ``seek(0)`` it (the rest of ``BinaryIO`` is never called)."""
        return cast(BinaryIO, self)


# ---- making one ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupPlan:
    """A backup checked before anything is created (``plan_backup``): its recipients parsed and
    its destination built."""

    config: BackupConfig
    recipients: list
    transfer: Transfer
    now: dt.datetime
    stamp: str  # the backup's id, in its name


def plan_backup(config: BackupConfig, *, now: dt.datetime | None = None) -> BackupPlan:
    """Everything a backup is refused for (``ConfigError``), checked before anything is created
    or archived: the recipients, the retention policy, and the destination built (its options,
    the secrets it reads, the modules it needs), not connected: connecting may create things (the
    destination's folder, a host key trusted on first use), and a connection held open while the
    account is archived could time out."""
    recipients = parse_recipients(config.recipients)
    if not recipients:
        raise ConfigError("backups are encrypted: give at least one recipient (age1... public key)")
    if config.retention is not None and config.retention.empty:
        raise ConfigError("an empty retention policy would keep everything: give a keep_* count, or none at all")
    when = _now(now)
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    return BackupPlan(config, recipients, transfer_for(config.to, config.options, stamp), when, stamp)


def create_backup(config: BackupConfig | BackupPlan, source: Source, *, now: dt.datetime | None = None,
                  progress: Progress | None = None) -> dict:
    """Archive ``source`` (a records source: the web service, an archive), verify, encrypt,
    store, check it on the destination, record it; then prune by ``config.retention``. Returns
    the index entry. ``config`` is planned first (``plan_backup``: refused before anything is
    created) unless it is a plan already. Holds the account's lock throughout (``LockedError``
    if another run has it)."""
    plan = config if isinstance(config, BackupPlan) else plan_backup(config, now=now)
    config = plan.config
    with AccountLock(config.state_dir, config.account, command="backup"):
        spool = new_spool(Path(config.state_dir), config.account)
        try:
            entry = _make(plan, source, spool, progress)
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        if config.retention is not None:
            _prune(config.state_dir, config.account, config.retention)
    return entry


def _make(plan: BackupPlan, source: Source, spool: Path, progress: Progress | None) -> dict:
    from .connectors.archive.source import ArchiveSource
    from .connectors.archive.verify import check as check_archive
    from .connectors.archive.zipcopy import copy_to_zip
    from .pipeline import new_run_id, run
    from .registry import create_sink
    from .sinks import RunContext

    config, recipients, transfer, now, stamp = plan.config, plan.recipients, plan.transfer, plan.now, plan.stamp
    entries = load_index(config.state_dir, config.account)
    name = f"{config.account}-{stamp}{SUFFIX}"
    if any(e["name"] == name for e in entries):
        raise SinkError(f"a backup named {name} already exists: one backup per second at most")
    plain = spool / name.removesuffix(".age")
    if isinstance(source, ArchiveSource) and source.whole:
        copy_to_zip(source.reader.path, plain)  # an archive is backed up as it is, not written again
    else:
        run(source, [create_sink(f"archive://{plain}", {})],
            RunContext(run_id=new_run_id(), source=source.description), progress=progress)
    problems, files, counts = check_archive(plain)
    if problems:
        raise ArchiveError(f"the new archive does not verify ({len(problems)} problem(s)): {'; '.join(problems[:3])}")
    sealed = spool / name
    plain_digest, sealed_digest = encrypt_file(plain, sealed, recipients)
    plain.unlink()
    try:
        transfer.connect()
        transfer.publish(sealed, name, sealed_digest.sha256, sealed_digest.size)
        try:
            checked = check_stored(transfer, name, sealed, sealed_digest)
        except BaseException:
            with contextlib.suppress(Exception):  # a stored file that does not check out is not kept
                transfer.delete(name)
            raise
    finally:
        transfer.close()
    entry = {
        "id": stamp, "name": name, "created": _iso(now),
        "destination": mask(config.to), "options": {k: v for k, v in dict(config.options).items()},
        "size": sealed_digest.size, "sha256": sealed_digest.sha256,
        "archive": {"size": plain_digest.size, "sha256": plain_digest.sha256, "files": files, "counts": counts},
        "recipients": [str(r) for r in config.recipients],
        "verified": True, "verified_at": _iso(_now(None)), "checked_by": checked,
    }
    save_index(config.state_dir, config.account, [*entries, entry])
    log.info("backup %s stored on %s (%d bytes, sha256 %s; %s)", name, mask(config.to), sealed_digest.size,
             sealed_digest.sha256, checked)
    return entry


def check_stored(transfer: Transfer, name: str, local: Path, digest: Digest) -> str:
    """Check the stored file against the local one: size, and the destination's checksum when
    it keeps one; else read it back and re-hash it. Returns how it was checked."""
    from .connectors.remote.base import local_checksum

    st = transfer.stat(name)
    if st is None or st.size != digest.size:
        raise SinkError(f"{name} is {'missing' if st is None else f'{st.size} bytes'} on the destination after "
                        f"upload, expected {digest.size} bytes", context=transfer.name)
    kind = transfer.capabilities.checksum
    if kind and st.checksum:
        want = digest.sha256 if kind == "sha256" else local_checksum(kind, local)
        if st.checksum != want:
            raise SinkError(f"{name} on the destination has {kind} {st.checksum}, expected {want}",
                            context=transfer.name)
        return f"{kind} on the destination"
    back = HashingFile()
    if not transfer.read(name, back.as_target()) or back.h.hexdigest() != digest.sha256 or back.size != digest.size:
        raise SinkError(f"{name} read back from the destination differs from what was sent", context=transfer.name)
    return "read back and re-hashed"


# ---- pruning ------------------------------------------------------------------------------------
def prune(state_dir: str | os.PathLike, account: str, retention: Retention, *, dry_run: bool = False,
          started: Callable[[], None] = lambda: None) -> list[dict]:
    """Remove the backups ``retention`` does not keep (from their destination, then the index);
    the removed entries. Holds the account's lock. ``started`` is called when the first removal
    begins (an error after it is a failure, not a refusal: ``exporter.audit.Line.begin``)."""
    with AccountLock(state_dir, account, command="prune"):
        return _prune(state_dir, account, retention, dry_run=dry_run, started=started)


def _prune(state_dir: str | os.PathLike, account: str, retention: Retention, dry_run: bool = False,
           started: Callable[[], None] = lambda: None) -> list[dict]:
    entries = load_index(state_dir, account)
    _kept, removed = select(entries, _when, lambda e: bool(e.get("verified")), retention)
    if dry_run:
        return removed
    started()
    done = []
    for entry in sorted(removed, key=_when):
        transfer = transfer_for(entry["destination"], entry.get("options") or {})
        try:
            transfer.connect()
            transfer.delete(entry["name"])
        finally:
            transfer.close()
        done.append(entry)
        entries = [e for e in entries if e is not entry]
        save_index(state_dir, account, entries)  # after each removal: the index never lists a removed file
        log.info("pruned backup %s (%s)", entry["name"], retention.describe())
    return done


# ---- verifying and restoring -------------------------------------------------------------------
def fetch(entry: dict, identities: list, spool: Path) -> tuple[Path | None, list[str]]:
    """Download a backup, check its sha256, decrypt it, check the archive's sha256, verify every
    file of the archive: (the verified plain zip in ``spool``, []) or (None, problems)."""
    from .connectors.archive.verify import verify as verify_archive

    name = entry["name"]
    sealed = spool / name
    transfer = transfer_for(entry["destination"], entry.get("options") or {})
    try:
        transfer.connect()
        with open(sealed, "wb") as fh:
            got = HashingFile(fh)
            found = transfer.read(name, got.as_target())
    finally:
        transfer.close()
    if not found:
        return None, [f"{name} is missing on {entry['destination']}"]
    if got.size != entry["size"] or got.h.hexdigest() != entry["sha256"]:
        return None, [f"{name} on {entry['destination']} is {got.size} bytes with sha256 {got.h.hexdigest()}, "
                      f"the index says {entry['size']} bytes, sha256 {entry['sha256']}"]
    plain = spool / name.removesuffix(".age")
    digest = decrypt_file(sealed, plain, identities)
    sealed.unlink()
    want = entry["archive"]
    if digest.sha256 != want["sha256"] or digest.size != want["size"]:
        return None, [f"the archive inside {name} has sha256 {digest.sha256}, the index says {want['sha256']}"]
    problems = verify_archive(plain)
    return (None, problems) if problems else (plain, [])


def verify_backups(state_dir: str | os.PathLike, account: str, which: str | None, identities: list, *,
                   started: Callable[[], None] = lambda: None) -> list[tuple[dict, list[str]]]:
    """Download, decrypt and re-hash the chosen backups (``find``), recording the result in the
    index: [(entry, problems)]. Holds the account's lock. ``started`` is called once the backups
    are chosen, before the first is fetched (an error after it is a failure, not a refusal)."""
    results = []
    with AccountLock(state_dir, account, command="verify"):
        entries = load_index(state_dir, account)
        chosen = find(entries, which)
        started()
        for entry in chosen:
            spool = new_spool(Path(state_dir), account)
            try:
                _plain, problems = fetch(entry, identities, spool)
            except (ArchiveError, SinkError) as e:
                problems = [str(e)]
            finally:
                shutil.rmtree(spool, ignore_errors=True)
            entry.update(verified=not problems, verified_at=_iso(_now(None)))
            entry.pop("problems", None)
            if problems:
                entry["problems"] = problems[:20]
            save_index(state_dir, account, entries)
            results.append((entry, problems))
    return results


def restore(state_dir: str | os.PathLike, account: str, which: str | None, identities: list, *,
            out: str | os.PathLike | None = None, sinks: Sequence[Sink] = (), progress: Progress | None = None,
            started: Callable[[], None] = lambda: None) -> dict:
    """Decrypt and verify a backup, then write the archive to ``out`` and/or replay it into
    ``sinks`` (any destinations, through the archive source). Returns the entry. Nothing is
    written anywhere unless the backup verifies. ``started`` is called once the request is
    checked, before the backup is fetched (an error after it is a failure, not a refusal)."""
    from .connectors.archive.source import ArchiveSource
    from .pipeline import new_run_id, run
    from .sinks import RunContext

    if out is None and not sinks:
        raise ConfigError("restore needs somewhere to put the account: --out PATH and/or --to DEST")
    entry = find(load_index(state_dir, account), which)[-1]
    if out is not None and Path(out).exists():
        raise ConfigError(f"{out} already exists: choose another --out")
    started()
    spool = account_dir(state_dir, account) / f"restore-{os.getpid()}"
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(mode=0o700)
    try:
        plain, problems = fetch(entry, identities, spool)
        if plain is None or problems:  # (no path comes without problems)
            raise ArchiveError(f"backup {entry['name']} does not verify: {'; '.join(problems[:3])}")
        if sinks:
            src = ArchiveSource(plain)
            run(src, list(sinks), RunContext(run_id=new_run_id(), source=src.description), progress=progress)
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(plain, out)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return entry
