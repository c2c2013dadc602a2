"""Exceptions that mean "the user gave us something wrong": shown as one line, exit code 2."""

from __future__ import annotations

from cdcsync.config import ConfigError
from cdcsync.db.cluster import ClusterError
from cdcsync.secrets import SecretFileError


def _collect() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConfigError, ClusterError, SecretFileError, FileNotFoundError]
    for module, name in [
        ("cdcsync.mapping.domains", "MappingError"),
        ("cdcsync.spec.model", "SpecError"),
        ("cdcsync.crypto", "CryptoError"),
        ("cdcsync.api.server", "ApiStartError"),
    ]:
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:
            continue
        err = getattr(mod, name, None)
        if isinstance(err, type) and issubclass(err, BaseException):
            errors.append(err)
    return tuple(errors)


USER_ERRORS: tuple[type[BaseException], ...] = _collect()
