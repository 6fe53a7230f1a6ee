"""Errors that tell the user what to do next."""


class LcstudyError(Exception):
    """Base class: every error the study raises on bad input, with the fix in its message."""


class InputError(LcstudyError, ValueError):
    """A parameter, image or file that the study cannot use as given."""


class DeviceError(LcstudyError, RuntimeError):
    """The requested device is not available on this machine."""


class WeightsError(LcstudyError, RuntimeError):
    """Pretrained weights could not be had."""


class DataError(LcstudyError, RuntimeError):
    """Data (images, reference files) could not be fetched or verified."""


class SchemaError(LcstudyError, RuntimeError):
    """Results written by another version of the result schema."""
