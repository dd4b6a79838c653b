"""age encryption of backups (``pyrage``), streamed, to public keys only.

A backup is encrypted to one or more recipients (``age1...`` X25519 public keys, or SSH public
keys ``ssh-ed25519 ...``/``ssh-rsa ...``), so the machine that writes backups cannot read them:
decrypting needs an identity (``AGE-SECRET-KEY-1...``), read from a file or an environment
variable (a secret: masked everywhere). The output is the standard age format (binary, not
armored): ``age -d -i KEY backup.zip.age > backup.zip`` decrypts it without this tool.

Both directions stream in 64 KiB pieces (age's own chunking): memory stays flat whatever the size,
and the SHA-256 of both the plain and the encrypted bytes are computed on the way.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import ArchiveError, ConfigError
from .secrets import read_secret, register_secret


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int


class _Hashing:
    """Wraps a file: hashes and counts what is read from it or written to it."""

    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.h = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.h.update(data)
        self.size += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()

    def digest(self) -> Digest:
        return Digest(self.h.hexdigest(), self.size)


def parse_recipients(values: Iterable[str]) -> list[Any]:
    """age recipients from their text (``age1...``, ``ssh-ed25519 AAAA...``); a secret key given
    as a recipient is refused (the writer must not hold it)."""
    from pyrage import RecipientError, ssh, x25519

    out = []
    for raw in values:
        text = str(raw).strip()
        if not text or text.startswith("#"):
            continue
        if text.upper().startswith("AGE-SECRET-KEY-"):
            register_secret(text)
            raise ConfigError("a secret key was given as a backup recipient: give its public key (age1..., "
                              "from `age-keygen -y`); the machine writing backups must not be able to read them")
        try:
            out.append(ssh.Recipient.from_str(text) if text.startswith("ssh-") else x25519.Recipient.from_str(text))
        except (RecipientError, ValueError) as e:
            raise ConfigError(f"not an age recipient: {text[:30]!r} ({e}); expected age1... or an SSH public key") from None
    return out


def read_recipients_file(path: str | os.PathLike) -> list[str]:
    """The recipients of an age recipients file (one a line, ``#`` comments), as text."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text("utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read the recipients file {p}: {e.strerror or e}") from None
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def load_identities(*, file: str | os.PathLike | None = None, env: str | None = None) -> list[Any]:
    """age identities from an identity file (``age-keygen`` output: comments and
    ``AGE-SECRET-KEY-1...`` lines) or an environment variable holding such lines. Every key is
    registered as a secret (masked in logs and messages)."""
    from pyrage import IdentityError, x25519

    if file:
        p = Path(file).expanduser()
        try:
            text = p.read_text("utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read the identity file {p}: {e.strerror or e}") from None
        where = str(p)
    elif env:
        text = read_secret(env=env, what="age identity") or ""
        where = f"${env}"
    else:
        raise ConfigError("decrypting a backup needs its identity: --identity-file PATH or --identity-env NAME")
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    for k in keys:
        register_secret(k)
    identities = []
    for k in keys:
        try:
            identities.append(x25519.Identity.from_str(k))
        except (IdentityError, ValueError):
            raise ConfigError(f"{where} holds a line that is not an age identity (AGE-SECRET-KEY-1...)") from None
    if not identities:
        raise ConfigError(f"{where} holds no age identity (AGE-SECRET-KEY-1...)")
    return identities


def encrypt_file(src: Path, dst: Path, recipients: list[Any]) -> tuple[Digest, Digest]:
    """Encrypt ``src`` into ``dst`` (created): (plain digest, encrypted digest). ``dst`` is not
    fsynced: it is the backup's scratch copy, uploaded at once (the destination makes its own copy
    durable)."""
    import pyrage

    if not recipients:
        raise ConfigError("backups are encrypted: give at least one recipient (age1... public key)")
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        reader, writer = _Hashing(fin), _Hashing(fout)
        try:
            pyrage.encrypt_io(reader, writer, recipients)
        except pyrage.EncryptError as e:
            raise ArchiveError(f"cannot encrypt {src.name}: {e}") from None
    return reader.digest(), writer.digest()


def decrypt_file(src: Path, dst: Path, identities: list[Any]) -> Digest:
    """Decrypt ``src`` into ``dst`` (created): the plain digest. A wrong identity or damaged bytes
    is one ArchiveError."""
    import pyrage

    with open(src, "rb") as fin, open(dst, "xb") as fout:
        writer = _Hashing(fout)
        try:
            pyrage.decrypt_io(fin, writer, identities)
        except pyrage.DecryptError as e:
            raise ArchiveError(f"cannot decrypt {src.name}: {e} (not one of its recipients' identities, or "
                               "the file is damaged)") from None
    return writer.digest()
