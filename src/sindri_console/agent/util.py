"""Small helpers shared by the agent modules: time stamps, UTF-8 cutting, child environments."""

from __future__ import annotations

import os
import platform
import socket
from datetime import UTC, datetime

CHILD_ENV_BLOCKED_PREFIXES = ("SINDRI_CONSOLE_", "SINDRI_AGENT_")

_ARCH_NAMES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i386": "386",
    "i686": "386",
}


def iso_from_epoch(seconds: float) -> str:
    """ISO 8601 UTC with millisecond precision and a Z suffix (00-conventions §1)."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso_from_epoch(datetime.now(tz=UTC).timestamp())


def parse_iso(value: str) -> datetime | None:
    """Parse an ISO 8601 time with an offset; naive or malformed values give None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def utf8_complete_prefix_len(data: bytes | bytearray) -> int:
    """Length of the longest prefix of ``data`` that does not end inside a multi-byte UTF-8 sequence."""
    n = len(data)
    # A sequence is at most 4 bytes long, so only the last 3 bytes can start an unfinished one.
    for back in range(1, min(4, n) + 1):
        byte = data[n - back]
        if byte & 0b1100_0000 == 0b1000_0000:
            continue  # continuation byte: keep looking for the lead byte
        if byte & 0b1000_0000 == 0:
            needed = 1
        elif byte & 0b1110_0000 == 0b1100_0000:
            needed = 2
        elif byte & 0b1111_0000 == 0b1110_0000:
            needed = 3
        elif byte & 0b1111_1000 == 0b1111_0000:
            needed = 4
        else:
            return n  # invalid lead byte: it will be replaced on decoding anyway
        return n - back if back < needed else n
    return n


def take_utf8_text(data: bytes | bytearray, max_bytes: int, final: bool = False) -> tuple[str, int]:
    """Decode a prefix of ``data`` into text whose UTF-8 encoding is at most ``max_bytes`` bytes.

    Returns the text and how many input bytes it consumed. A sequence cut at the window's end is left for
    the next call; with ``final`` the tail of the data is decoded (invalid bytes replaced by U+FFFD).
    """
    if not data:
        return "", 0
    for window in (max_bytes, max(1, max_bytes // 3)):
        chunk = data[:window]
        used = len(chunk) if final and len(data) <= window else utf8_complete_prefix_len(chunk)
        if used == 0:
            if not final:
                return "", 0
            used = len(chunk)
        text = bytes(data[:used]).decode("utf-8", "replace")
        # Each invalid byte becomes a 3-byte U+FFFD, so a third of the window always fits.
        if len(text.encode("utf-8")) <= max_bytes:
            return text, used
    used = max(1, max_bytes // 3)
    return bytes(data[:used]).decode("utf-8", "replace"), used


def sanitized_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's environment without its own configuration (the key must never reach a child)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CHILD_ENV_BLOCKED_PREFIXES)}
    if extra:
        env.update(extra)
    return env


def host_arch() -> str:
    machine = platform.machine().lower()
    return _ARCH_NAMES.get(machine, machine or "unknown")


def host_os() -> str:
    return platform.system().lower() or "unknown"


def hostname() -> str:
    return socket.gethostname() or "localhost"


def read_os_release(path: str = "/etc/os-release") -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for raw in handle:
                line = raw.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip('"').strip("'")
    except OSError:
        pass
    return values


def platform_label(release: dict[str, str]) -> str | None:
    ident = release.get("ID")
    if not ident:
        return None
    version = release.get("VERSION_ID")
    return f"{ident} {version}"[:128] if version else ident[:128]
