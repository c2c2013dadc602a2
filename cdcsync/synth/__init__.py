"""Synthetic hospital: realistic, seeded HIS data for the emr.* mirror (``cdcsync gen``)."""

from cdcsync.synth.hospital import INVALID_KINDS, Codes, GenResult, Hospital, expected_invalid, generate, load_codes

__all__ = ["INVALID_KINDS", "Codes", "GenResult", "Hospital", "expected_invalid", "generate", "load_codes"]
