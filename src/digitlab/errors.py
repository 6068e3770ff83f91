"""The error hierarchy. The library raises these; only the CLI prints them."""


class DigitlabError(Exception):
    """Base class: a problem the user can act on, described in one sentence."""


class DataError(DigitlabError):
    """A data file or folder is missing, malformed or inconsistent."""


class ChecksumError(DataError):
    """Data did not match its known SHA-256 checksum."""


class SourceUnavailableError(DataError):
    """No data source could provide the dataset."""


class ImageError(DigitlabError):
    """An image file could not be decoded or used."""


class NoDigitFoundError(ImageError):
    """An image is blank or nearly blank: there is no digit to classify."""


class ModelError(DigitlabError):
    """A model file is missing, corrupt or does not fit the data."""


class ConfigError(DigitlabError):
    """A setting or configuration file is invalid."""


class ExportError(DigitlabError):
    """An exported model failed to write or to match the Keras model."""


class NotAnImageError(ImageError):
    """The bytes are not in any image format digitlab reads."""


class CorruptImageError(ImageError):
    """The bytes claim an image format but cannot be decoded (truncated, damaged)."""


class ImageTooLargeError(ImageError):
    """The image would take more pixels, memory or decoding work (JPEG scans) than digitlab
    allows: a decompression bomb guard."""


class TrainingDivergedError(DigitlabError):
    """The loss stopped being a number: the weights no longer hold a model."""


class SamplesError(DigitlabError):
    """A person's stored samples cannot be stored, read or used as asked."""


class SamplesFullError(SamplesError):
    """The samples folder already holds as many samples as its cap allows."""


class TeachingError(DigitlabError):
    """The server cannot start teaching its model now: too few samples, or a model it
    cannot fine-tune."""


class TeachingBusyError(TeachingError):
    """A fine-tune of the served model is already running."""
