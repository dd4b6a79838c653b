"""The remote sink: any file format of the files sink, plus media, published onto a remote.

Files are first written into a local staging directory by the files sink (``connectors.files``),
exactly as a local export would write them; what it publishes (``OutputDir.published``) is then
uploaded:

* at each ``commit()`` the files published since the previous commit (media, per-submission files);
* at ``close(ok=True)`` the aggregate files the files sink publishes at the end (CSV, XLSX, ...);
* ``close(ok=False)`` uploads no more data and removes the staging directory.

Uploads go through ``connectors.remote.transfer.Transfer``: atomic where the remote can rename
(``<name>.<short hash>.partial`` renamed into place, so a reader never sees half a file), under the
final name on a remote whose uploads appear only once complete (object stores); upload sessions
(``ChunkedRemote``) for files larger than ``Capabilities.max_simple_upload``.

Skipping: a file is not sent again when the remote already holds the same bytes. With a remote
checksum kind (Dropbox, SharePoint) that means same size and same checksum. Remotes without
checksums (FTP, SFTP) get a manifest, ``.exporter-manifest.json`` at the remote root, mapping each
path we uploaded to its size and sha256: a file is skipped when the remote size matches and the
manifest's sha256 equals the local one. A file we never uploaded (not in the manifest) with the
same size as the local one is considered identical (size-only comparison: the only fact FTP and
SFTP give cheaply). The manifest is written at the end of every run, also a failed one (it only
records files that really are on the remote), through a ``.partial`` + rename.

Incremental state: cursors from ``Checkpoint`` records are kept in ``.exporter-state.json`` at the
remote root, written only by a successful ``close``; a failed run never advances it. State and
manifest are read back with ``get`` (``ReadableRemote``); a remote without it works without them.

Every remote call goes through ``exporter.retry.retry_call`` (option ``retries``, default 5);
a remote that already retries each call itself says so with ``retries_itself = True`` (``SelfRetryingRemote``).
Options: ``retries``, ``retry_base_delay``, ``retry_max_delay``, ``chunk_size``, ``staging_dir``
(``catalog.SINK_OPTIONS``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.errors import ExporterError, SinkError
from exporter.fsutil import file_digest
from exporter.model import Record
from exporter.naming import safe_filename
from exporter.options import parse
from exporter.sinks import RunContext

from .base import ReadableRemote, Remote, RemoteStat, RootedRemote, local_checksum
from .catalog import SINK_OPTIONS
from .transfer import PARTIAL_SUFFIX_LEN, Transfer

if TYPE_CHECKING:
    from exporter.connectors.files import FilesSink

    from .eraser import RemoteEraser

log = logging.getLogger("exporter.remote")

STATE_FILE = ".exporter-state.json"
MANIFEST_FILE = ".exporter-manifest.json"
RESERVED = frozenset({STATE_FILE, MANIFEST_FILE})
STATE_FORMAT = "exporter-remote-state"
MANIFEST_FORMAT = "exporter-remote-manifest"


def _default_inner(root: Path, options: dict) -> FilesSink:
    from exporter.connectors.files import FilesSink

    return FilesSink(str(root), options, keep_current=False, track_published=True)


@dataclasses.dataclass
class UploadStats:
    uploaded: int = 0
    skipped: int = 0
    bytes: int = 0
    uploaded_paths: list[str] = dataclasses.field(default_factory=list)


class RemoteSink:
    """Stage with the files sink, upload what it publishes. See the module docstring."""

    def __init__(self, remote: Remote, options: dict | None = None, *,
                 inner_factory: Callable[[Path, dict], FilesSink] | None = None):
        self.options = dict(options or {})
        self.remote = remote
        self.name = remote.name
        self.capabilities = dataclasses.replace(
            remote.capabilities,
            tested=remote.capabilities.tested or "real servers on loopback",
        )
        self._inner_factory = inner_factory or _default_inner
        self.transfer = Transfer(remote, self.options)
        self.stats = UploadStats()
        self.inner: FilesSink | None = None
        self.staging: Path | None = None
        self._upto = 0  # index in out.published already handled
        self._planned: dict[str, str] = {}  # folded remote path -> local relative path
        self._manifest: dict[str, dict] | None = None
        self._manifest_dirty = False
        self._state_loaded: dict[str, str | None] | None = None
        self._pending_cursors: dict[str, str | None] = {}
        self._committed_cursors: dict[str, str | None] = {}
        self._run_id = ""
        self._renamed: set[str] = set()

    def __repr__(self) -> str:
        return f"RemoteSink({self.name})"

    def eraser(self) -> RemoteEraser:
        """``exporter forget`` over the files this remote holds (``connectors.remote.eraser``)."""
        from .eraser import RemoteEraser

        return RemoteEraser(self)

    # ---- helpers -------------------------------------------------------------------------
    def _inner(self) -> FilesSink:
        """The files sink staging this run's files (set by ``open``)."""
        if self.inner is None:
            raise SinkError(f"{self.name} is not open")
        return self.inner

    def _staging(self) -> Path:
        if self.staging is None:
            raise SinkError(f"{self.name} is not open")
        return self.staging

    def _read_json(self, path: str) -> Any | None:
        """Download a small JSON file we wrote (state, manifest); None when absent."""
        if not isinstance(self.remote, ReadableRemote):
            log.warning("%s cannot read files back: %s is not used", self.name, path)
            return None
        buf = io.BytesIO()
        if not self.transfer.read(path, buf):
            return None
        try:
            return json.loads(buf.getvalue().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SinkError(f"{path} on {self.name} is not valid JSON ({e}); remove it to start over") from None

    # ---- planning ------------------------------------------------------------------------
    def remote_path(self, rel: str) -> str:
        """Map a staged relative path onto the remote: components holding a character the remote
        forbids, or too long for it, are renamed with ``safe_filename`` (deterministic, with a hash
        of the original name, so re-runs land on the same names)."""
        caps = self.capabilities
        forbidden = caps.forbidden_chars or ""
        max_name = caps.max_name_length or 255
        parts = []
        for comp in rel.split("/"):
            if not comp:
                continue
            if any(c in forbidden for c in comp) or len(comp.encode("utf-8")) > max_name:
                new = safe_filename(comp, max_bytes=max_name, forbidden=forbidden)
                if comp not in self._renamed:
                    self._renamed.add(comp)
                    log.info("%r is stored as %r on %s (forbidden characters or too long)", comp, new, self.name)
                comp = new
            parts.append(comp)
        return "/".join(parts)

    def _root(self) -> str:
        # str(): a plugin's remote may report its root as a Path
        return str(self.remote.root or "") if isinstance(self.remote, RootedRemote) else ""

    def _check_path(self, rel: str, remote_rel: str) -> None:
        caps = self.capabilities
        root = self._root().rstrip("/")
        full = f"{root}/{remote_rel}" if root else remote_rel
        extra = PARTIAL_SUFFIX_LEN if caps.rename else 0
        if caps.max_path_length is not None and len(full) + extra > caps.max_path_length:
            raise SinkError(
                f"path too long for {self.name}: {full!r} is {len(full)} characters"
                f"{' (+' + str(extra) + ' while uploading)' if extra else ''}, the limit is "
                f"{caps.max_path_length}; use a shorter destination folder or shorter form names"
            )
        key = remote_rel.casefold() if caps.case_insensitive else remote_rel
        other = self._planned.get(key)
        if other is not None and other != rel:
            raise SinkError(f"{rel!r} and {other!r} would both be stored as {remote_rel!r} on {self.name}"
                            f"{' (names compared without case)' if caps.case_insensitive else ''}")
        self._planned[key] = rel

    def _plan(self, rels: Sequence[str]) -> list[tuple[str, str]]:
        """Every path of a step is checked before any of them is uploaded."""
        plan = []
        for rel in rels:
            if rel in RESERVED:
                continue  # our own files: written by this sink, never copied from staging
            remote_rel = self.remote_path(rel)
            self._check_path(rel, remote_rel)
            plan.append((rel, remote_rel))
        return plan

    # ---- uploading -----------------------------------------------------------------------
    def _same(self, remote_rel: str, local: Path, size: int, sha: str, st: RemoteStat | None) -> bool:
        if st is None or st.size != size:
            return False
        kind = self.capabilities.checksum
        if kind is not None and st.checksum is not None:
            return st.checksum == (sha if kind == "sha256" else local_checksum(kind, local))
        entry = (self._manifest or {}).get(remote_rel)
        if entry is not None:
            return entry.get("sha256") == sha
        return True  # size-only: nothing better is known about a file we did not upload

    def _upload(self, rel: str, remote_rel: str) -> None:
        local = self._staging() / rel
        size = local.stat().st_size
        sha = file_digest(local)
        st = self.transfer.stat(remote_rel)
        if self._same(remote_rel, local, size, sha, st):
            self.stats.skipped += 1
            self._remember(remote_rel, size, sha)
            return
        self.transfer.publish(local, remote_rel, sha, size)
        self.stats.uploaded += 1
        self.stats.bytes += size
        self.stats.uploaded_paths.append(remote_rel)
        self._remember(remote_rel, size, sha)

    def _remember(self, remote_rel: str, size: int, sha: str) -> None:
        entry = {"size": size, "sha256": sha}
        if self._manifest is not None and self._manifest.get(remote_rel) != entry:
            self._manifest[remote_rel] = entry
            self._manifest_dirty = True

    def _upload_new(self) -> None:
        out = self._inner().output()
        fresh = [p.as_posix() if isinstance(p, Path) else str(p) for p in out.published[self._upto:]]
        plan = self._plan(fresh)
        for rel, remote_rel in plan:
            self._upload(rel, remote_rel)
        del out.published[: self._upto + len(fresh)]  # uploaded: forget them (memory stays flat)
        self._upto = 0

    # ---- manifest and state --------------------------------------------------------------
    def _load_manifest(self) -> None:
        if self.capabilities.checksum is not None:
            return  # the remote checksums content itself
        data = self._read_json(MANIFEST_FILE)
        files = data.get("files") if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None
        if data is not None and files is None:
            log.warning("%s: %s is not ours or unreadable; starting a new one", self.name, MANIFEST_FILE)
        self._manifest = dict(files or {})

    def _save_manifest(self, attempts: int | None = None) -> None:
        if self._manifest is None or not self._manifest_dirty:
            return
        doc = {"format": MANIFEST_FORMAT, "version": 1, "run_id": self._run_id,
               "files": dict(sorted(self._manifest.items()))}
        self.transfer.write_small(MANIFEST_FILE, (json.dumps(doc, ensure_ascii=False, indent=0) + "\n").encode(),
                          attempts)
        self._manifest_dirty = False

    def load_state(self) -> dict[str, str | None]:
        if self._state_loaded is None:
            self.transfer.connect()
            data = self._read_json(STATE_FILE)
            cursors = data.get("cursors") if isinstance(data, dict) else None
            if data is not None and (data.get("format") != STATE_FORMAT or not isinstance(cursors, dict)):
                raise SinkError(f"{STATE_FILE} on {self.name} is not an exporter state file; "
                                "remove it to start over")
            self._state_loaded = dict(cursors or {})
        return dict(self._state_loaded)

    def _save_state(self) -> None:
        if not self._committed_cursors:
            return
        before = self.load_state()
        cursors = {**before, **self._committed_cursors}
        if cursors == before:
            return  # nothing advanced: nothing to send
        doc = {"format": STATE_FORMAT, "version": 1, "run_id": self._run_id,
               "cursors": dict(sorted(cursors.items()))}
        self.transfer.write_small(STATE_FILE, (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode())
        self._state_loaded = cursors

    # ---- Sink protocol -------------------------------------------------------------------
    def open(self, ctx: RunContext) -> None:
        self._run_id = self.transfer.run_id = ctx.run_id
        staging_parent = parse(SINK_OPTIONS, self.options, strict=False)["staging_dir"]
        if staging_parent:
            Path(staging_parent).mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix="exporter-remote-", dir=staging_parent))
        try:
            self.transfer.connect()  # a remote creates its root folder when it connects
            root = self._root()
            limit = self.capabilities.max_path_length
            if limit is not None and len(root) + 1 >= limit:
                raise SinkError(f"destination folder {root!r} is already as long as {self.name} allows "
                                f"({limit} characters)")
            self._load_manifest()
            self.inner = inner = self._inner_factory(self.staging, self.options)
            inner.open(ctx)
        except BaseException:
            self._cleanup()
            raise

    def write(self, batch: Sequence[Record]) -> None:
        for r in batch:
            if r.kind == "checkpoint":
                self._pending_cursors[r.form_id] = r.cursor
        self._inner().write(batch)

    def commit(self) -> None:
        self._inner().commit()
        self._upload_new()
        self._committed_cursors.update(self._pending_cursors)
        self._pending_cursors.clear()

    def close(self, ok: bool) -> None:
        if self.inner is None:  # never opened
            self._cleanup()
            return
        if not ok:
            try:
                with contextlib.suppress(Exception):
                    self.inner.close(False)
                self._abandon()
            finally:
                self._cleanup()
            return
        try:
            self.inner.close(True)
            self._upload_new()
            self._committed_cursors.update(self._pending_cursors)
            self._pending_cursors.clear()
            self._save_manifest()
            self._save_state()
            log.info("%s: %d file(s) uploaded (%d bytes), %d already there", self.name,
                     self.stats.uploaded, self.stats.bytes, self.stats.skipped)
        except BaseException:
            self._abandon()
            self._cleanup()
            raise
        self._cleanup()

    def _abandon(self) -> None:
        """After a failure: remove temporary uploads, record what really got there."""
        self.transfer.drop_partials()
        try:
            self._save_manifest(attempts=1)
        except ExporterError as e:
            log.warning("%s: manifest not updated: %s", self.name, e)

    def _cleanup(self) -> None:
        self.transfer.close()
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
