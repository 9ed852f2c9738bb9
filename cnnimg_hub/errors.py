"""The project's own error types: every refusal raises one of these with a message that says what to do."""


class CnnImgError(Exception):
    """Base class of every error cnnimg-hub raises on purpose (bad input, bad weights, Hub trouble)."""


class ImageInputError(CnnImgError, ValueError):
    """An image, mask or parameter that cannot be processed (corrupt, too large, wrong size, out of range)."""


class ModelLoadError(CnnImgError):
    """A model folder or Hub repo that cannot be loaded (missing, pickle-only, corrupt, config and weights disagree)."""


class ModelNotFoundError(ModelLoadError):
    """The folder, repo id or revision does not exist (or is not in the cache while offline)."""


class WrongTaskError(ModelLoadError):
    """The model loaded fine but is for another task than the one asked for."""


class HubError(CnnImgError):
    """The Hub (or a Hub-compatible server) answered with an error or did not answer in time."""
