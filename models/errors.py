"""The model library's own errors; the analyzer maps them to its exit codes at its boundary."""


class ModelError(Exception):
    """Base of the errors this library raises on purpose (one-line messages)."""


class WeightsError(ModelError):
    """Weights missing, corrupt, of the wrong sha256 or unreadable."""


class ModelSettingsError(ModelError, ValueError):
    """A model setting that cannot work: unknown detector or classifier, device, precision, size."""


class DownloadError(ModelError):
    """A weights download failed (network or server); a later attempt may succeed."""
