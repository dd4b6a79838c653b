"""One error tree for the whole toolkit.

    ExporterError                 every error this package raises on purpose
    ├── ConfigError               bad command line, URL, option, missing secret      (terminal)
    ├── SourceError               anything coming from where data is read
    │   ├── AuthError             401/403/410, bad token or login                     (terminal)
    │   ├── NotFoundError         unknown form/submission/media id                     (terminal)
    │   ├── BadAnswerError        malformed JSON, unexpected shape, status:error       (terminal)
    │   ├── RateLimitError        429 (carries retry_after)                           (transient)
    │   └── TransientSourceError  5xx, connection reset, timeout                      (transient)
    ├── ArchiveError              an account archive is missing, corrupt or mismatched (terminal)
    ├── LockedError               the account is being run by another process          (terminal)
    ├── SinkError                 anything a destination refuses                       (terminal)
    │   └── TransientSinkError    a destination that may answer later                 (transient)
    └── FormatError               a file writer cannot write a value                  (terminal)

    Interrupted (a BaseException, like KeyboardInterrupt)  SIGTERM, SIGHUP or SIGINT received

Lower-level library errors (requests, SQLAlchemy, SDKs) are translated into this tree where they
enter our code; the CLI turns any ExporterError into one readable line and a non-zero exit
(``one_line``). ``Interrupted`` is raised in the main thread by the CLI's signal handlers: not an
``Exception``, so no ``except Exception`` swallows it; every clean-up still runs on its way out.
"""
from __future__ import annotations


class ExporterError(Exception):
    """Root of every error raised on purpose by the toolkit."""

    transient = False

    def __init__(self, message: str, *, context: str | None = None):
        self.message = message
        self.context = context
        super().__init__(f"{context}: {message}" if context else message)


class ConfigError(ExporterError):
    """The command line, a URL or a setting is wrong."""


class SourceError(ExporterError):
    """Data could not be read from the source."""


class AuthError(SourceError):
    """The token or the login was refused."""


class NotFoundError(SourceError):
    """The service does not know this id."""


class BadAnswerError(SourceError):
    """The service answered something that is not what the API promises."""


class TransientSourceError(SourceError):
    """A failure worth retrying (5xx, reset connection, timeout)."""

    transient = True

    def __init__(self, message: str, *, context: str | None = None, retry_after: float | None = None):
        super().__init__(message, context=context)
        self.retry_after = retry_after


class RateLimitError(TransientSourceError):
    """HTTP 429: the service asks us to slow down."""


class ArchiveError(ExporterError):
    """An account archive is missing, corrupt, or does not match its manifest."""


class LockedError(ExporterError):
    """Another process holds the account's lock (``exporter.locks``): this run did not start."""


class SinkError(ExporterError):
    """A destination refused the data."""


class TransientSinkError(SinkError):
    """A destination failure worth retrying."""

    transient = True

    def __init__(self, message: str, *, context: str | None = None, retry_after: float | None = None):
        super().__init__(message, context=context)
        self.retry_after = retry_after


class FormatError(ExporterError):
    """A file writer could not write a value or a document."""


def os_error_text(e: OSError, doing: str) -> str:
    """One readable line for an operating-system error: what was being done, the reason in words
    and the path(s) involved (``cannot write the archive: permission denied (/backups/a.zip)``).
    A full disk or quota also gives its code (``no space left on device [ENOSPC: disk full]``),
    the word people search logs for."""
    import errno

    reason = (e.strerror or type(e).__name__).lower() if e.strerror else str(e) or type(e).__name__
    if e.errno is not None and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        reason += f" [{errno.errorcode[e.errno]}: disk full]"
    paths = [p for p in (e.filename, getattr(e, "filename2", None)) if p]
    return f"cannot {doing}: {reason}" + (f" ({', '.join(str(p) for p in paths)})" if paths else "")


def help_hint(command_path: str) -> str:
    """What a usage error adds after its message: where the command's help is."""
    return f" (see '{command_path} --help')"


def without_help_hint(line: str) -> str:
    """``line`` without the ``help_hint`` at its end (an account's error, for the jobs file's user,
    who did not type the command)."""
    import re

    return re.sub(r" \(see '[^']*--help'\)$", "", line)


class Interrupted(BaseException):
    """The process was asked to stop (SIGTERM, SIGHUP, SIGINT): raised in the main thread, so the
    run rolls back and removes its temporary files on its way out. Exit code 128 + signal."""

    def __init__(self, signum: int | str):
        import re
        import signal

        if not isinstance(signum, int):
            # a library that re-raises ``type(e)(its text + ours)`` (reportlab) passes our text:
            # the signal named last in it is the one
            names = re.findall(r"\bSIG[A-Z]+\b", str(signum))
            signum = getattr(signal, names[-1], signal.SIGTERM) if names else signal.SIGTERM
        self.signum = int(signum)
        try:
            self.signal_name = signal.Signals(signum).name
        except ValueError:
            self.signal_name = f"signal {signum}"
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def one_line(e: BaseException) -> str:
    """The one line that reports ``e``: our own errors say what they are; anything else is
    prefixed with its class name (an unexpected error names its kind). Not masked: callers
    showing or storing it pass it through ``secrets.mask``."""
    if isinstance(e, (ExporterError, Interrupted)):
        text = str(e)
    elif isinstance(e, KeyboardInterrupt):
        text = "interrupted by SIGINT"
    else:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return " ".join(text.split()) or type(e).__name__


def run_status(e: BaseException) -> str:
    """How a run that ended with ``e`` is recorded: ``interrupted`` (a signal) or ``failed``."""
    return "interrupted" if isinstance(e, (Interrupted, KeyboardInterrupt)) else "failed"
