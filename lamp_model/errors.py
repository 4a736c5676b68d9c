"""Errors shared across lamp_model, kept in one dependency-free module."""


class ModelUnavailableError(RuntimeError):
    """Pretrained weights cannot be loaded here (offline, not cached, or no such local path).

    The message says which weights are missing and what to do about it, so the
    user never has to read a hub or download traceback.
    """
