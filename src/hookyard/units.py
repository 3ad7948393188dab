"""Parsing of human-friendly durations ("5s", "30m", "2h") and sizes ("1MiB", "512KB")."""

from __future__ import annotations

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def _split(text: str) -> tuple[float, str]:
    text = text.strip().lower()
    digits = len(text) - len(text.lstrip("0123456789."))
    if digits == 0:
        raise ValueError(f"{text!r} does not start with a number")
    return float(text[:digits]), text[digits:].strip()


def parse_duration(value: str | float) -> float:
    """Seconds from 5, 5.5, "5s", "250ms", "5m", "2h", "1d". Plain numbers are seconds."""
    if isinstance(value, int | float):
        number, unit = float(value), "s"
    else:
        number, unit = _split(value)
        unit = unit or "s"
    if unit not in _DURATION_UNITS:
        raise ValueError(f"unknown duration unit {unit!r} (use ms, s, m, h or d)")
    if number < 0:
        raise ValueError("a duration cannot be negative")
    return number * _DURATION_UNITS[unit]


def parse_size(value: str | int) -> int:
    """Bytes from 1048576, "1MiB", "512KB", "64kib"."""
    if isinstance(value, int):
        number, unit = float(value), "b"
    else:
        number, unit = _split(value)
        unit = unit or "b"
    if unit not in _SIZE_UNITS:
        raise ValueError(f"unknown size unit {unit!r} (use B, KB, KiB, MB, MiB, GB or GiB)")
    return int(number * _SIZE_UNITS[unit])
