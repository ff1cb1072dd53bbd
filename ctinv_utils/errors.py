"""Error types. Each message names the problem and the fix in one line."""


class CTInvError(Exception):
    """Base class for every error ctinv raises on bad input."""


class DataRootError(CTInvError):
    """The data root is missing, empty or not in a known layout."""


class DicomFileError(CTInvError):
    """A DICOM file is unreadable, corrupt, or not a CT image."""


class DicomSeriesError(CTInvError):
    """A patient lacks its low-dose or full-dose series."""


class DicomPairingError(CTInvError):
    """Low- and full-dose slices of a patient cannot be paired by position."""


class PresetError(CTInvError):
    """Unknown preset, unknown notebook, or a malformed preset file."""


class DicomHeaderError(DicomFileError):
    """A CT DICOM header lacks or garbles what turns stored values into HU (rescale, spacing, size)."""


class DicomValueError(DicomFileError):
    """A CT slice's HU values are not finite or outside the plausible CT range."""


class BadArgumentError(CTInvError, ValueError):
    """An argument of a ctinv function is outside its allowed values (also a ValueError)."""


class CacheNotWritableError(CTInvError, OSError):
    """A cache folder cannot be written: a read-only file system or no permission (nothing was written)."""


class UntrainedError(CTInvError, RuntimeError):
    """A model or generator is used before it was trained."""


def first_line(what: BaseException | str, limit: int | None = None) -> str:
    """The first non-empty line of an exception's message (or of a text), at most ``limit``
    characters; an exception without a message gives its type's name. The one way ctinv quotes
    another library's error inside its own one-line messages."""
    text = str(what)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line and isinstance(what, BaseException):
        line = type(what).__name__
    return line[:limit]
