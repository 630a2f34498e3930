"""Every error fastism_dist raises on purpose. All subclass ``ValueError``."""


class FastISMError(ValueError):
    """Base class of the errors raised by fastism_dist for bad input or settings."""


class InputError(FastISMError):
    """Bad sequences or arrays: names the file, record and position where known."""


class ModelError(FastISMError):
    """A model that cannot be scored (no (batch, length, channels) input, unloadable file, ...)."""


class MutationSpecError(FastISMError):
    """Bad ``start`` / ``end`` / ``substitutions`` for the model's sequence input."""


class CheckError(FastISMError):
    """The fast path disagreed with naive ISM in the construction-time self-check."""


class StoreMismatchError(FastISMError):
    """An existing Zarr store was written with other parameters; names the first difference."""

    def __init__(self, message, parameter=None):
        super().__init__(message)
        self.parameter = parameter
