"""The one component that locates and runs the external `sindri` CLI.

Contract: 10-core §2 (resolution once and cached, version parsing, minimum instance version), 10-core §6.4
(CLI runner: argument vector, closed stdin, own process group, environment allow-list, capped and redacted
output, SIGTERM then SIGKILL on timeout, argv table) and 20-ops §7.7 steps 3–4 (line streaming, long lines
split, secret values replaced before anything is stored or published).

Used by lifecycle jobs, deployments, the registry and the version route. It raises no HTTP errors itself:
callers turn `CliFacts.available == False` into a 503 with `CLI_MISSING_MESSAGE`, and a `CliRunResult` into a
job or deployment outcome.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import json
import os
import re
import shutil
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from sindri_console.kit.clock import utcnow

log = structlog.get_logger("sindri_console.cli_runner")

CLI_MISSING_MESSAGE = (
    "The Sindri CLI was not found. Install it (https://github.com/pacphi/sindri) "
    "or set SINDRI_BIN_PATH to its path."
)

OUTPUT_CAP_BYTES = 10 * 1024 * 1024
TAIL_BYTES = 64 * 1024
LINE_MAX_CHARS = 10_000
LAST_LINE_MAX_CHARS = 500
MIN_SECRET_LENGTH = 6
DEFAULT_MASK = "***"
DEFAULT_KILL_GRACE_SECONDS = 10.0
DEFAULT_DRAIN_SECONDS = 5.0
RESOLVE_TIMEOUT_SECONDS = 15.0
RECHECK_SECONDS = 60.0

_READ_CHUNK = 64 * 1024
_FACT_MAX_CHARS = 128
# The resolution probes get a short kill grace so a hung binary cannot hold the version route much past 15 s.
_PROBE_KILL_GRACE_SECONDS = 1.0


# ---------------------------------------------------------------------------------------------------------
# Semantic versions (10-core §2)
# ---------------------------------------------------------------------------------------------------------

_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_SEMVER_RE = re.compile(
    rf"({_NUM})\.({_NUM})\.({_NUM})"
    rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    rf"(?:\+({_BUILD_ID}(?:\.{_BUILD_ID})*))?"
)
# Loose on purpose: it only finds candidates in `--version` text; each candidate is then parsed strictly.
_SEMVER_TOKEN_RE = re.compile(r"(?<![0-9A-Za-z.])[vV]?([0-9]+\.[0-9]+\.[0-9]+(?:[-+][0-9A-Za-z.+-]*)?)")
_SEMVER_MAX_CHARS = 256


@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def parse_semver(value: object, *, allow_v_prefix: bool = False) -> SemVer | None:
    """Strict SemVer 2.0.0 (no leading zeros, no empty identifiers); None when `value` is not one.

    `allow_v_prefix` accepts `v3.4.1` as agents and CLIs often report it; validation of
    SINDRI_MIN_INSTANCE_VERSION uses the strict default.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if allow_v_prefix and text[:1] in ("v", "V"):
        text = text[1:]
    if not text or len(text) > _SEMVER_MAX_CHARS:
        return None
    match = _SEMVER_RE.fullmatch(text)
    if match is None:
        return None
    major, minor, patch, pre, build = match.groups()
    return SemVer(
        int(major),
        int(minor),
        int(patch),
        tuple(pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
    )


def _compare_identifiers(a: str, b: str) -> int:
    a_num, b_num = a.isdigit(), b.isdigit()
    if a_num and b_num:
        return (int(a) > int(b)) - (int(a) < int(b))
    if a_num != b_num:
        # Numeric identifiers always have lower precedence than alphanumeric ones.
        return -1 if a_num else 1
    return (a > b) - (a < b)


def _compare(a: SemVer, b: SemVer) -> int:
    core_a, core_b = (a.major, a.minor, a.patch), (b.major, b.minor, b.patch)
    if core_a != core_b:
        return -1 if core_a < core_b else 1
    if a.prerelease == b.prerelease:
        return 0
    # A pre-release sorts before its release.
    if not a.prerelease:
        return 1
    if not b.prerelease:
        return -1
    for x, y in zip(a.prerelease, b.prerelease, strict=False):
        result = _compare_identifiers(x, y)
        if result:
            return result
    return (len(a.prerelease) > len(b.prerelease)) - (len(a.prerelease) < len(b.prerelease))


def compare_semver(a: str | SemVer | None, b: str | SemVer | None) -> int | None:
    """-1, 0 or 1 by SemVer precedence (build metadata ignored); None when either side does not parse."""
    va = a if isinstance(a, SemVer) else parse_semver(a, allow_v_prefix=True)
    vb = b if isinstance(b, SemVer) else parse_semver(b, allow_v_prefix=True)
    if va is None or vb is None:
        return None
    return _compare(va, vb)


VersionStatus = Literal["CURRENT", "OUTDATED", "UNKNOWN"]


def version_status(instance_version: str | None, min_version: str | None) -> VersionStatus:
    """An instance's `versionStatus` (10-core §2), computed at read time."""
    result = compare_semver(instance_version, min_version)
    if result is None:
        return "UNKNOWN"
    return "OUTDATED" if result < 0 else "CURRENT"


# ---------------------------------------------------------------------------------------------------------
# CLI facts and resolution (10-core §2)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliFacts:
    """What the version route reports; when `available` is False every other field is None."""

    available: bool
    version: str | None = None
    target: str | None = None
    commit: str | None = None
    build_date: str | None = None
    resolved_at: datetime | None = None
    bin_path: str | None = None


UNAVAILABLE = CliFacts(available=False)


def min_instance_version(env_value: str | None, facts: CliFacts | None) -> tuple[str | None, str | None]:
    """(minInstanceVersion, minInstanceVersionSource) per 10-core §2.

    The setting wins when set (startup has validated it; it is returned as configured). Otherwise
    `<major>.<minor>.0` of the resolved CLI version, else (None, None).
    """
    if env_value is not None and env_value.strip():
        return env_value.strip(), "ENV"
    if facts is not None and facts.available:
        parsed = parse_semver(facts.version, allow_v_prefix=True)
        if parsed is not None:
            return f"{parsed.major}.{parsed.minor}.0", "CLI"
    return None, None


def _short_fact(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text[:_FACT_MAX_CHARS] if text else None


def parse_version_json(stdout: str) -> dict[str, str | None] | None:
    """Fields of `sindri version --json`; None unless there is an object with a semver `version`."""
    text = stdout.strip()
    candidates = [text]
    # Tolerate log lines before the object: also try the last line that looks like one.
    for line in reversed(text.splitlines()):
        if line.strip().startswith("{"):
            candidates.append(line.strip())
            break
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        version = data.get("version")
        if not isinstance(version, str) or parse_semver(version, allow_v_prefix=True) is None:
            continue
        return {
            "version": version.strip().lstrip("vV"),
            "target": _short_fact(data.get("target")),
            "commit": _short_fact(data.get("commit")),
            "build_date": _short_fact(data.get("build_date")),
        }
    return None


def first_semver_token(text: str) -> str | None:
    """The first semver-looking token of `sindri --version` output (e.g. `sindri 3.4.1 (abc1234)`)."""
    for match in _SEMVER_TOKEN_RE.finditer(text):
        token = match.group(1).rstrip(".-+")
        if parse_semver(token) is not None:
            return token
    return None


Fingerprint = tuple[str, int, int]


def _fingerprint(path: str | None) -> Fingerprint | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st.st_size, st.st_mtime_ns)


class SindriCli:
    """One per process: finds the binary and caches what `sindri version` says about itself.

    `resolve()` is single-flight (concurrent callers share one in-flight task, so at most one probe process
    runs) and cached for the life of the process. The cache is revalidated at most once per
    `recheck_seconds`: a successful result only when the binary's (path, size, mtime) changed, a failed one
    always. `cached_facts()` never touches the filesystem or spawns anything.
    """

    def __init__(
        self,
        bin_path: str | None,
        clock: Callable[[], datetime] = utcnow,
        *,
        timeout_seconds: float = RESOLVE_TIMEOUT_SECONDS,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        configured = bin_path.strip() if isinstance(bin_path, str) else ""
        self._configured = configured or None
        self._clock = clock
        self._timeout = timeout_seconds
        self._recheck = recheck_seconds
        self._facts: CliFacts | None = None
        self._fingerprint: Fingerprint | None = None
        self._checked_at: datetime | None = None
        self._task: asyncio.Task[CliFacts] | None = None

    @property
    def configured_bin_path(self) -> str | None:
        return self._configured

    def locate(self) -> str | None:
        """SINDRI_BIN_PATH when set (an executable file, else None: no silent fallback), else `sindri` on PATH."""
        if self._configured is not None:
            candidate = self._configured
            if os.sep not in candidate and (os.altsep is None or os.altsep not in candidate):
                # A bare name in the setting is looked up on PATH like the default.
                return shutil.which(candidate)
            candidate = os.path.abspath(os.path.expanduser(candidate))
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
            return None
        found = shutil.which("sindri")
        return os.path.abspath(found) if found else None

    def cached_facts(self) -> CliFacts | None:
        """The last resolved facts, None before the first resolution finished. Never spawns anything."""
        return self._facts

    def start_background_resolution(self) -> asyncio.Task[CliFacts] | None:
        """Start (or join) a resolution when one is due; returns the in-flight task, None when the cache is valid."""
        return self._task_if_due()

    async def resolve(self) -> CliFacts:
        task = self._task_if_due()
        if task is not None:
            # shield: a caller that gives up must not cancel the resolution others are waiting for.
            return await asyncio.shield(task)
        # _task_if_due returns None only when valid facts are cached.
        return self._facts if self._facts is not None else UNAVAILABLE

    def _task_if_due(self) -> asyncio.Task[CliFacts] | None:
        loop = asyncio.get_running_loop()
        # A task left behind by another (closed) event loop can never finish here: start afresh.
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return self._task
        if self._facts is not None:
            now = self._clock()
            if self._checked_at is not None:
                elapsed = (now - self._checked_at).total_seconds()
                # A clock that went backwards counts as due rather than freezing the cache forever.
                if 0 <= elapsed < self._recheck:
                    return None
            self._checked_at = now
            if self._facts.available and _fingerprint(self.locate()) == self._fingerprint:
                return None
        self._task = loop.create_task(self._resolve_once(), name="sindri-cli-resolve")
        return self._task

    async def _resolve_once(self) -> CliFacts:
        path = self.locate()
        fingerprint = _fingerprint(path)
        facts = UNAVAILABLE
        if path is not None and fingerprint is not None:
            try:
                facts = await self._probe(path)
            except Exception:  # a broken binary must never break the caller; it is reported as unavailable
                log.exception("sindri_cli_resolution_crashed")
                facts = UNAVAILABLE
        self._facts = facts
        self._fingerprint = fingerprint
        self._checked_at = self._clock()
        if facts.available:
            log.info("sindri_cli_resolved", version=facts.version, target=facts.target)
        else:
            log.warning("sindri_cli_unavailable", found=path is not None)
        return facts

    async def _probe(self, path: str) -> CliFacts:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        env = build_cli_env({})
        result = await run_cli(
            path,
            ["version", "--json"],
            cwd=None,
            env=env,
            timeout_seconds=self._timeout,
            secrets_to_redact=[],
            kill_grace_seconds=_PROBE_KILL_GRACE_SECONDS,
            drain_seconds=_PROBE_KILL_GRACE_SECONDS,
        )
        if result.succeeded:
            fields = parse_version_json(result.stdout)
            if fields is not None:
                return CliFacts(available=True, resolved_at=self._clock(), bin_path=path, **fields)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return UNAVAILABLE
        result = await run_cli(
            path,
            ["--version"],
            cwd=None,
            env=env,
            timeout_seconds=remaining,
            secrets_to_redact=[],
            kill_grace_seconds=_PROBE_KILL_GRACE_SECONDS,
            drain_seconds=_PROBE_KILL_GRACE_SECONDS,
        )
        if result.succeeded:
            version = first_semver_token(result.stdout) or first_semver_token(result.stderr)
            if version is not None:
                return CliFacts(available=True, version=version, resolved_at=self._clock(), bin_path=path)
        return UNAVAILABLE


# ---------------------------------------------------------------------------------------------------------
# Environment allow-list (10-core §6.4, 30-admin §1.6 and §17.3)
# ---------------------------------------------------------------------------------------------------------

_PASS_THROUGH_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "SHELL",
        "LANG",
        "LC_ALL",
        "TERM",
        "TMPDIR",
        "KUBECONFIG",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "SSH_AUTH_SOCK",
        "SINDRI_BIN_PATH",
    }
)
_PASS_THROUGH_PREFIXES = ("XDG_",)

# The provider credential specs of 30-admin §1.6: the exact names looked up in the vault when absent.
PROVIDER_CREDENTIAL_NAMES: tuple[str, ...] = (
    "FLY_API_TOKEN",
    "RUNPOD_API_KEY",
    "NORTHFLANK_API_TOKEN",
    "E2B_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_SUBSCRIPTION_ID",
    "DIGITALOCEAN_TOKEN",
)
_CREDENTIAL_NAMES = frozenset(PROVIDER_CREDENTIAL_NAMES)
_CREDENTIAL_PREFIXES = ("AWS_", "AZURE_")
# Credential-family variables that are plain settings, not secrets: masking them would only garble output.
_NOT_SECRET_NAMES = frozenset({"AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"})

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_credential_name(name: str) -> bool:
    return name in _CREDENTIAL_NAMES or name.startswith(_CREDENTIAL_PREFIXES)


def is_pass_through_name(name: str) -> bool:
    """True for a server environment variable the CLI may see (credentials included)."""
    return name in _PASS_THROUGH_NAMES or name.startswith(_PASS_THROUGH_PREFIXES) or is_credential_name(name)


def build_cli_env(
    extra: Mapping[str, str] | None,
    vault_lookup: Callable[[str], str | None] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The CLI's whole environment: the allow-list of the server's, credentials, then the caller's `extra`.

    Nothing else of the server's environment is copied (never DATABASE_URL, SECRET_VAULT_KEY,
    SINDRI_CONSOLE_API_KEY). A provider credential missing or empty in the environment is taken from
    `vault_lookup(name)` (the global vault secret of the same name). `extra` is what the caller adds on
    purpose (lifecycle: DOCKER_HOST; deployments: resolved secrets and console variables) and wins.
    """
    source = os.environ if environ is None else environ
    env: dict[str, str] = {}
    for name, value in source.items():
        if name in _PASS_THROUGH_NAMES or name.startswith(_PASS_THROUGH_PREFIXES):
            env[name] = value
        elif is_credential_name(name) and value:
            env[name] = value
    if vault_lookup is not None:
        for name in PROVIDER_CREDENTIAL_NAMES:
            if not env.get(name):
                secret = vault_lookup(name)
                if isinstance(secret, str) and secret:
                    env[name] = secret
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not _ENV_NAME_RE.fullmatch(name):
            raise ValueError("environment variable names must match [A-Za-z_][A-Za-z0-9_]*")
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError(f"environment variable {name} must be a string without NUL characters")
        env[name] = value
    return env


def credential_values(env: Mapping[str, str]) -> list[str]:
    """Values of the provider credentials in `env`: `run_cli` always masks them in captured output."""
    return [v for k, v in env.items() if is_credential_name(k) and k not in _NOT_SECRET_NAMES and v]


# ---------------------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------------------


class Redactor:
    """Replaces every occurrence of a secret value (≥ 6 chars) with a mask.

    A multi-line secret (a PEM key) is also matched line by line, because line streaming never sees it whole.
    """

    def __init__(self, secrets: Iterable[str], mask: str = DEFAULT_MASK) -> None:
        values: set[str] = set()
        for secret in secrets:
            if not isinstance(secret, str):
                continue
            if len(secret) >= MIN_SECRET_LENGTH:
                values.add(secret)
            if "\n" in secret or "\r" in secret:
                values.update(p for p in re.split(r"[\r\n]+", secret) if len(p) >= MIN_SECRET_LENGTH)
        # Longest first so that, at one position, the longest secret is the one masked.
        ordered = sorted(values, key=len, reverse=True)
        self.mask = mask
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None
        self.max_chars = max((len(v) for v in ordered), default=0)
        self.max_bytes = max((len(v.encode("utf-8", "surrogatepass")) for v in ordered), default=0)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        mask = self.mask
        return self._pattern.sub(lambda _m: mask, text)

    def redact_window(self, text: str, start: int, end: int) -> str:
        """Redacted `text[start:end]`, where `text` carries context on both sides.

        A secret crossing either edge of the window is masked as a whole, so no fragment of it survives
        the cut; the context itself is dropped.
        """
        if self._pattern is None:
            return text[start:end]
        out: list[str] = []
        pos = start
        for m in self._pattern.finditer(text):
            if m.end() <= start:
                continue
            if m.start() >= end:
                break
            if m.start() > pos:
                out.append(text[pos : m.start()])
            out.append(self.mask)
            pos = m.end()
        if pos < end:
            out.append(text[pos:end])
        return "".join(out)

    def safe_cut(self, text: str, cut: int) -> int:
        """A position near `cut` that falls inside no secret occurrence (for splitting long lines)."""
        if self._pattern is None:
            return cut
        for m in self._pattern.finditer(text, 0, cut + self.max_chars):
            if m.end() <= cut:
                continue
            if m.start() >= cut:
                break
            return m.start() if m.start() > 0 else m.end()
        return cut


def redact_secrets(text: str, secrets: Iterable[str], mask: str = DEFAULT_MASK) -> str:
    """Mask every secret value of ≥ 6 chars in `text` (for error messages built outside `run_cli`)."""
    return Redactor(secrets, mask).redact(text)


# ---------------------------------------------------------------------------------------------------------
# Running the CLI (10-core §6.4, 20-ops §7.7)
# ---------------------------------------------------------------------------------------------------------

Stream = Literal["stdout", "stderr"]
OnLine = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class CliRunResult:
    """Outcome of one CLI process. Every text field is already redacted."""

    exit_code: int | None  # negative: killed by that signal (Python convention); None: never started
    timed_out: bool
    start_error: str | None
    stdout: str  # first 10 MiB
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_bytes: int  # everything the process wrote, also beyond the cap
    stderr_bytes: int
    stdout_tail: str  # last 64 KiB
    stderr_tail: str
    output_tail: str  # last 64 KiB of both streams, interleaved line by line as they arrived
    duration_seconds: float
    last_stderr_line: str | None

    @property
    def succeeded(self) -> bool:
        return self.start_error is None and not self.timed_out and self.exit_code == 0


def _char_start_back(data: bytes, index: int) -> int:
    """Move `index` back onto the first byte of a UTF-8 character (at most 3 steps)."""
    steps = 0
    while 0 < index < len(data) and (data[index] & 0xC0) == 0x80 and steps < 3:
        index -= 1
        steps += 1
    return index


def _char_start_forward(data: bytes, index: int) -> int:
    steps = 0
    while index < len(data) and (data[index] & 0xC0) == 0x80 and steps < 3:
        index += 1
        steps += 1
    return index


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _keep_first_bytes(text: str, limit: int) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _keep_last_bytes(text: str, limit: int) -> str:
    raw = text.encode("utf-8", "surrogatepass")
    return text if len(raw) <= limit else raw[-limit:].decode("utf-8", "ignore")


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _StreamCapture:
    """One output stream: the capped head, a rolling tail and the line splitter.

    Raw bytes are kept with `max_bytes` of extra context past each cut so that a secret crossing a cut is
    still recognised and masked whole.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.total_bytes = 0
        self._head = bytearray()
        self._head_limit = OUTPUT_CAP_BYTES + redactor.max_bytes
        self._tail = bytearray()
        self._tail_keep = TAIL_BYTES + redactor.max_bytes
        self._flush_at = LINE_MAX_CHARS + redactor.max_chars
        self.last_nonempty: str | None = None

    def feed(self, data: bytes) -> list[str]:
        self.total_bytes += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
        self._tail += data
        if len(self._tail) > 2 * self._tail_keep:
            del self._tail[: len(self._tail) - self._tail_keep]
        return self._lines(self._decoder.decode(data))

    def finish(self) -> list[str]:
        pieces = self._lines(self._decoder.decode(b"", final=True))
        if self._pending:
            pieces += self._split(self._redactor.redact(self._pending.removesuffix("\r")))
            self._pending = ""
        return pieces

    def _lines(self, text: str) -> list[str]:
        if not text:
            return []
        self._pending += text
        pieces: list[str] = []
        if "\n" in text:
            *complete, self._pending = self._pending.split("\n")
            for line in complete:
                pieces += self._split(self._redactor.redact(line.removesuffix("\r")))
        # An unterminated line is emitted in pieces once it is longer than a line may be; the extra
        # max_chars of look-ahead guarantees a secret starting before the cut is entirely in view.
        while len(self._pending) > self._flush_at:
            cut = self._redactor.safe_cut(self._pending, LINE_MAX_CHARS)
            pieces += self._split(self._redactor.redact(self._pending[:cut]))
            self._pending = self._pending[cut:]
        return pieces

    def _split(self, line: str) -> list[str]:
        pieces = (
            [line]
            if len(line) <= LINE_MAX_CHARS
            else [line[i : i + LINE_MAX_CHARS] for i in range(0, len(line), LINE_MAX_CHARS)]
        )
        for piece in pieces:
            stripped = piece.strip()
            if stripped:
                self.last_nonempty = stripped[:LAST_LINE_MAX_CHARS]
        return pieces

    def head_text(self) -> tuple[str, bool]:
        data = bytes(self._head)
        if self.total_bytes <= OUTPUT_CAP_BYTES:
            return self._redactor.redact(_decode(data)), False
        boundary = _char_start_back(data, OUTPUT_CAP_BYTES)
        kept, context = _decode(data[:boundary]), _decode(data[boundary:])
        text = self._redactor.redact_window(kept + context, 0, len(kept))
        return _keep_first_bytes(text, OUTPUT_CAP_BYTES), True

    def tail_text(self) -> str:
        data = bytes(self._tail)
        if len(data) <= TAIL_BYTES:
            return self._redactor.redact(_decode(data))
        boundary = _char_start_forward(data, len(data) - TAIL_BYTES)
        context, kept = _decode(data[:boundary]), _decode(data[boundary:])
        text = self._redactor.redact_window(context + kept, len(context), len(context) + len(kept))
        return _keep_last_bytes(text, TAIL_BYTES)


class _CombinedTail:
    """The last 64 KiB of both streams, built from (already redacted) lines in arrival order."""

    def __init__(self) -> None:
        self._parts: deque[tuple[str, int]] = deque()
        self._size = 0

    def add(self, line: str) -> None:
        text = line + "\n"
        size = _utf8_len(text)
        self._parts.append((text, size))
        self._size += size
        while len(self._parts) > 1 and self._size - self._parts[0][1] >= TAIL_BYTES:
            self._size -= self._parts.popleft()[1]

    def text(self) -> str:
        return _keep_last_bytes("".join(part for part, _ in self._parts), TAIL_BYTES)


class _Run:
    """Shared state of one `run_cli` call: serialises `on_line` and records a callback failure."""

    def __init__(self, on_line: OnLine | None) -> None:
        self.on_line = on_line
        self.lock = asyncio.Lock()
        self.combined = _CombinedTail()
        self.callback_error: BaseException | None = None
        self.abort = asyncio.Event()
        self.activity = 0  # bumped per chunk read and per line delivered

    async def emit(self, stream: Stream, pieces: list[str]) -> None:
        # One lock: the callback is never re-entered and sees lines in the order they were recorded.
        async with self.lock:
            for piece in pieces:
                self.activity += 1
                self.combined.add(piece)
                if self.on_line is None or self.callback_error is not None:
                    continue
                try:
                    await self.on_line(stream, piece)
                except Exception as exc:  # stop calling it, stop the process, re-raise from run_cli
                    self.callback_error = exc
                    self.abort.set()


async def _pump(reader: asyncio.StreamReader, stream: Stream, capture: _StreamCapture, run: _Run) -> None:
    while True:
        chunk = await reader.read(_READ_CHUNK)
        if not chunk:
            break
        run.activity += 1
        pieces = capture.feed(chunk)
        if pieces:
            await run.emit(stream, pieces)
    pieces = capture.finish()
    if pieces:
        await run.emit(stream, pieces)


async def _open_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        # limit bounds the reader's buffer: a slow on_line callback back-pressures the CLI instead of memory.
        reader = asyncio.StreamReader(limit=_READ_CHUNK)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        raise
    return reader, transport


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # pgid 0/1 would address our own group or init: never.
    if pgid <= 1:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _terminate_group(pgid: int, wait_task: asyncio.Task[int], grace: float) -> None:
    """SIGTERM to the whole group; SIGKILL to whatever is left `grace` seconds later."""
    loop = asyncio.get_running_loop()
    _signal_group(pgid, signal.SIGTERM)
    deadline = loop.time() + grace
    while True:
        if wait_task.done() and not _group_alive(pgid):
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await asyncio.sleep(min(0.05, remaining))
    _signal_group(pgid, signal.SIGKILL)
    await wait_task


_START_ERRORS = {
    errno.ENOENT: "the program was not found",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOEXEC: "the file is not an executable program",
    errno.ENOTDIR: "the program was not found",
    errno.ETXTBSY: "the program file is busy",
}


def _describe_start_error(exc: BaseException, cwd: str | os.PathLike[str] | None) -> str:
    if isinstance(exc, OSError):
        # subprocess reports a failed chdir with the directory as the file name.
        if cwd is not None and exc.filename is not None and os.fspath(exc.filename) == os.fspath(cwd):
            return "The Sindri CLI could not be started: the working directory is not usable."
        reason = _START_ERRORS.get(exc.errno or 0)
        if reason is None:
            # strerror is the generic text of the errno; the file name lives in exc.filename and stays out.
            reason = (exc.strerror or "operating system error").rstrip(".").lower()
    else:
        reason = "an argument or environment value is invalid"
    return f"The Sindri CLI could not be started: {reason}."


def _not_started(reason: str, started: float) -> CliRunResult:
    loop = asyncio.get_running_loop()
    return CliRunResult(
        exit_code=None,
        timed_out=False,
        start_error=reason,
        stdout="",
        stderr="",
        stdout_truncated=False,
        stderr_truncated=False,
        stdout_bytes=0,
        stderr_bytes=0,
        stdout_tail="",
        stderr_tail="",
        output_tail="",
        duration_seconds=round(loop.time() - started, 3),
        last_stderr_line=None,
    )


async def run_cli(
    bin_path: str | os.PathLike[str] | None,
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float,
    secrets_to_redact: Iterable[str] = (),
    on_line: OnLine | None = None,
    mask: str = DEFAULT_MASK,
    kill_grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS,
    drain_seconds: float = DEFAULT_DRAIN_SECONDS,
) -> CliRunResult:
    """Run `<bin_path> <argv…>` and capture its output.

    - Argument vector, never a shell; stdin is /dev/null; the process leads its own process group.
    - `env` is the child's complete environment (build it with `build_cli_env`); None = `build_cli_env({})`.
    - stdout and stderr are read concurrently; each keeps its first 10 MiB in memory (the rest is read and
      discarded) and its last 64 KiB.
    - `on_line(stream, line)` is awaited per line, one call at a time, in arrival order: UTF-8 decoded with
      replacement, without the line ending, lines over 10 000 chars split into pieces. If it raises, the
      process group is terminated and the exception propagates once the process is gone.
    - Each value of `secrets_to_redact`, and each provider credential in `env`, of ≥ 6 chars is replaced by
      `mask` in every line and every returned text (lifecycle: `***`, deployments pass `****`).
    - After `timeout_seconds` the process group gets SIGTERM, and SIGKILL `kill_grace_seconds` later if any
      member is left. After the process exits its pipes are read to the end; a pipe that a leftover child
      keeps open is abandoned once it has been idle for `drain_seconds`.
    - A program that cannot be started gives `start_error` (one sentence, no paths) and no exception.
    """
    if timeout_seconds <= 0:
        raise ValueError("timeout_seconds must be positive")
    loop = asyncio.get_running_loop()
    started = loop.time()
    env_map = build_cli_env({}) if env is None else dict(env)
    redactor = Redactor([*secrets_to_redact, *credential_values(env_map)], mask)
    args = [os.fspath(a) for a in argv]

    if bin_path is None or not os.fspath(bin_path):
        return _not_started("The Sindri CLI could not be started: the program was not found.", started)

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            os.fspath(bin_path),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            cwd=cwd,
            env=env_map,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        os.close(out_r)
        os.close(err_r)
        return _not_started(_describe_start_error(exc, cwd), started)
    finally:
        # The child holds its own copies; ours must go or EOF would never come.
        os.close(out_w)
        os.close(err_w)

    pgid = proc.pid
    run = _Run(on_line)
    captures = {"stdout": _StreamCapture(redactor), "stderr": _StreamCapture(redactor)}
    transports: list[asyncio.BaseTransport] = []
    pumps: list[asyncio.Task[None]] = []
    wait_task: asyncio.Task[int] = loop.create_task(proc.wait())
    timed_out = False
    try:
        # _open_reader owns the descriptor from the call on, whether it succeeds or not.
        fd, out_r = out_r, -1
        reader, transport = await _open_reader(fd)
        transports.append(transport)
        pumps.append(loop.create_task(_pump(reader, "stdout", captures["stdout"], run)))
        fd, err_r = err_r, -1
        reader, transport = await _open_reader(fd)
        transports.append(transport)
        pumps.append(loop.create_task(_pump(reader, "stderr", captures["stderr"], run)))

        abort_task = loop.create_task(run.abort.wait())
        try:
            remaining = max(0.0, timeout_seconds - (loop.time() - started))
            await asyncio.wait(
                {wait_task, abort_task}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            abort_task.cancel()
        if not wait_task.done():
            timed_out = not run.abort.is_set()
            await _terminate_group(pgid, wait_task, kill_grace_seconds)
        exit_code = wait_task.result()

        # Read to the end. Only a pipe that stays idle for drain_seconds (a leftover child holding it open)
        # is abandoned; a slow on_line callback is progress and is waited for.
        while True:
            seen = run.activity
            _, still_reading = await asyncio.wait(pumps, timeout=drain_seconds)
            if not still_reading:
                break
            if run.activity == seen:
                for transport in transports:
                    transport.close()
                break
        await asyncio.gather(*pumps)
    except BaseException:
        # Cancelled or broken: leave no process behind.
        _signal_group(pgid, signal.SIGKILL)
        for task in (*pumps, wait_task):
            task.cancel()
        raise
    finally:
        for transport in transports:
            transport.close()
        for fd in (out_r, err_r):
            if fd >= 0:
                os.close(fd)

    if run.callback_error is not None:
        raise run.callback_error

    stdout, stdout_truncated = captures["stdout"].head_text()
    stderr, stderr_truncated = captures["stderr"].head_text()
    return CliRunResult(
        exit_code=exit_code,
        timed_out=timed_out,
        start_error=None,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=stdout_truncated,
        stderr_truncated=stderr_truncated,
        stdout_bytes=captures["stdout"].total_bytes,
        stderr_bytes=captures["stderr"].total_bytes,
        stdout_tail=captures["stdout"].tail_text(),
        stderr_tail=captures["stderr"].tail_text(),
        output_tail=run.combined.text(),
        duration_seconds=round(loop.time() - started, 3),
        last_stderr_line=captures["stderr"].last_nonempty,
    )


# ---------------------------------------------------------------------------------------------------------
# Argument vectors (10-core §6.4 table; 20-ops §7.7 step 3)
# ---------------------------------------------------------------------------------------------------------

VERSION_JSON_ARGV: tuple[str, ...] = ("version", "--json")
VERSION_FALLBACK_ARGV: tuple[str, ...] = ("--version",)

_BACKUP_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_BACKUP_PROFILES = {"USER_DATA": "user-data", "STANDARD": "standard", "FULL": "full"}


def suspend_argv(cfg_path: str) -> list[str]:
    return ["stop", "--config", cfg_path]


def resume_argv(cfg_path: str) -> list[str]:
    return ["start", "--config", cfg_path]


def destroy_argv(cfg_path: str) -> list[str]:
    return ["destroy", "--force", "--config", cfg_path]


def deploy_argv(cfg_path: str) -> list[str]:
    return ["deploy", "--config", cfg_path]


def backup_argv(cfg_path: str, label: str, profile: str, compression: int) -> list[str]:
    """`connect --config <cfg> --command "sindri backup … && stat -c %s …"`.

    The command runs in a shell on the instance, so label, profile and level are validated here again
    (whatever the route checked) before they are put into it.
    """
    if not isinstance(label, str) or not _BACKUP_LABEL_RE.fullmatch(label):
        raise ValueError("backup label must match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (1-128 chars)")
    key = profile.strip().upper().replace("-", "_") if isinstance(profile, str) else ""
    if key not in _BACKUP_PROFILES:
        raise ValueError("backup profile must be USER_DATA, STANDARD or FULL")
    if isinstance(compression, bool) or not isinstance(compression, int) or not 1 <= compression <= 9:
        raise ValueError("backup compression level must be an integer from 1 to 9")
    archive = f"~/.sindri/backups/{label}.tar.gz"
    command = (
        f"sindri backup --output {archive} --profile {_BACKUP_PROFILES[key]} "
        f"--compression {compression} --yes && stat -c %s {archive}"
    )
    return ["connect", "--config", cfg_path, "--command", command]
