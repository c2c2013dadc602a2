"""Exceptions that mean "the user gave us something wrong": shown as one line, exit code 2."""

from __future__ import annotations

from cdcsync.api import ApiStartError
from cdcsync.config_error import ConfigError
from cdcsync.crypto import CryptoError
from cdcsync.db.cluster import ClusterError
from cdcsync.db.migrate import MirrorRefused
from cdcsync.extras import MissingExtraError
from cdcsync.mapping.domains import MappingError
from cdcsync.ops.backup.catalog import BackupError
from cdcsync.secrets import SecretFileError
from cdcsync.spec.model import SpecError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, ClusterError, SecretFileError, FileNotFoundError, MappingError, SpecError, CryptoError,
    ApiStartError, MirrorRefused, MissingExtraError, BackupError,
)
