"""The `sindri.yaml` subset the console accepts (20-ops §7.3–§7.6, §8.4, §10.1).

Pure functions: no database, no HTTP, no settings lookups. Every field path is relative to the YAML
root (`deployment.provider`, `extensions.active[2]`, `secrets[0].source`); callers put their own
prefix in front (`yamlConfig`, `yamlContent`) with `FieldError.under`.
"""

from __future__ import annotations

import copy
import math
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingStartEvent,
    NodeEvent,
    StreamEndEvent,
)

from sindri_console.kit.providers import PROVIDER_ALIASES as _PROVIDER_ALIASES

MAX_YAML_BYTES = 65_536
MAX_DEPTH = 32

MIB = 2**20
GIB = 2**30

# Deployment targets the CLI can deploy to directly (§7.3); `docker-compose` is stored as `docker`.
DEPLOYMENT_PROVIDERS: tuple[str, ...] = (
    "fly",
    "kubernetes",
    "docker",
    "devpod",
    "e2b",
    "runpod",
    "northflank",
)

# 40-agent-protocol §2.3 aliases plus `docker-compose` (§7.1): the product-wide table
PROVIDER_ALIASES: Mapping[str, str] = _PROVIDER_ALIASES

BUILTIN_PROFILES: tuple[str, ...] = (
    "minimal",
    "fullstack",
    "ai-dev",
    "anthropic-dev",
    "systems",
    "enterprise",
    "devops",
    "mobile",
    "visionflow-core",
    "visionflow-data-scientist",
    "visionflow-creative",
    "visionflow-full",
)

DISTROS: tuple[str, ...] = ("ubuntu", "fedora", "opensuse")

RESERVED_SECRET_EXACT: frozenset[str] = frozenset(
    {
        "AUTHORIZED_KEYS",
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "SESSION_SECRET",
        "SECRET_VAULT_KEY",
        "AUTH_BYPASS",
        "PATH",
        "HOME",
        "USER",
        "SHELL",
        "TMPDIR",
        "IFS",
        "ENV",
        "BASH_ENV",
        "NODE_OPTIONS",
        "KUBECONFIG",
        "SSH_AUTH_SOCK",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "FLY_API_TOKEN",
        "RUNPOD_API_KEY",
        "NORTHFLANK_API_TOKEN",
        "E2B_API_KEY",
        "DIGITALOCEAN_TOKEN",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
    }
)

RESERVED_SECRET_PREFIXES: tuple[str, ...] = (
    "SINDRI_",
    "DRAUPNIR_",
    "PRICING_",
    "POSTGRES_",
    "LD_",
    "DYLD_",
    "PYTHON",
    "DOCKER_",
    "XDG_",
    "AWS_",
    "AZURE_",
    "GIT_",
)

# Regular expressions are matched with fullmatch and ASCII classes: `$` would accept a trailing
# newline and `\d` would accept non-ASCII digits.
NAME_RE = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
VERSION_RE = re.compile(r"[0-9]+\.[0-9]+", re.ASCII)
SIZE_RE = re.compile(r"([0-9]+)(MB|GB)", re.ASCII)
EXTENSION_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}(?:@[A-Za-z0-9._+-]{1,64})?", re.ASCII)
SECRET_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]{0,127}", re.ASCII)

MAX_EXTENSIONS = 200
MAX_SECRETS = 100

_KNOWN_TOP_LEVEL = ("version", "name", "deployment", "extensions", "secrets", "providers", "distro")
_EXTENSION_KEYS = ("profile", "active", "additional", "autoInstall")
_GPU_KEYS = ("enabled", "type", "count", "tier", "memory")
_GPU_TYPES = ("nvidia", "amd")
_GPU_TIERS = ("gpu-small", "gpu-medium", "gpu-large", "gpu-xlarge")
_SYSTEM_DIRS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
)
_SAFE_DOCKER_RUNTIMES = ("runc", "sysbox-runc", "auto")
_UNSAFE_DIND_MODES = ("privileged", "socket")
# §7.6: `providers.devpod.type` → the key under `providers.devpod.<type>` naming the machine size.
DEVPOD_SIZE_KEYS: Mapping[str, str] = {
    "aws": "instanceType",
    "gcp": "machineType",
    "azure": "vmSize",
    "digitalocean": "size",
}
_ENV_MAPPING_NAMES = ("env", "environment")
_PRIVILEGED_HINT = "set DEPLOY_ALLOW_PRIVILEGED_DOCKER=true on the console to allow it"


@dataclass(frozen=True)
class FieldError:
    """One problem, with the dotted path of the offending value relative to the YAML root."""

    field: str
    message: str

    def under(self, prefix: str) -> FieldError:
        """The same error with `prefix` in front (`yamlConfig` + `name` → `yamlConfig.name`)."""
        if not prefix:
            return self
        if not self.field:
            return FieldError(prefix, self.message)
        joiner = "" if self.field.startswith("[") else "."
        return FieldError(f"{prefix}{joiner}{self.field}", self.message)

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class ParsedYaml:
    """A document that passed the safe-loading rules of §7.3: one mapping, no tags, no aliases."""

    document: dict[Any, Any]
    text: str
    size_bytes: int


@dataclass
class ValidationResult:
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_validation(self) -> dict[str, Any]:
        """The `validation` column of a template (§8.1)."""
        return {"valid": self.valid, "errors": [error.as_dict() for error in self.errors]}


# --------------------------------------------------------------------------------------------------
# Parsing


# libyaml's parser is about thirty times faster than the pure-Python one on a 64 KiB document; the
# constructor (what builds Python values) is SafeConstructor either way.
_SafeBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeBase):
    """Safe loader that also refuses duplicate keys and merge keys.

    The CLI's YAML reader rejects duplicates and does not merge `<<`; accepting either here would let
    the console check one document while the CLI deploys another.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConstructorError(
                        None, None, "merge keys ('<<') are not supported", key_node.start_mark
                    )
        mapping = super().construct_mapping(node, deep=deep)
        if len(mapping) != len(node.value):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise ConstructorError(None, None, f"duplicate key {_show(key)}", key_node.start_mark)
                seen.add(key)
        return mapping


# A plain `=` resolves to YAML 1.1's value tag, which SafeLoader cannot construct; it is just text.
_StrictLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def _mark_text(mark: yaml.Mark | None) -> str:
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}"


def _yaml_error(exc: yaml.YAMLError) -> FieldError:
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "the text is not valid YAML"
        mark = exc.problem_mark or exc.context_mark
        return FieldError("", f"Invalid YAML{_mark_text(mark)}: {problem}")
    if isinstance(exc, yaml.reader.ReaderError):
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        return FieldError(
            "",
            f"Invalid YAML: the control character U+{code:04X} is not allowed (character {exc.position + 1})",
        )
    return FieldError("", f"Invalid YAML: {exc}")


def _scan_events(text: str) -> FieldError | None:
    """Walk the event stream before anything is built, so a bomb or a bad root never gets constructed."""
    loader = _StrictLoader(text)
    try:
        documents = 0
        depth = 0
        while True:
            event = loader.get_event()
            where = _mark_text(event.start_mark)
            if isinstance(event, StreamEndEvent):
                break
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    return FieldError(
                        "",
                        f"The YAML holds more than one document (a second one starts{where}); send exactly one",
                    )
                continue
            if isinstance(event, AliasEvent):
                return FieldError(
                    "", f"Aliases (*{event.anchor}) are not allowed{where}: write the value out"
                )
            if isinstance(event, NodeEvent):
                if event.anchor is not None:
                    return FieldError(
                        "", f"Anchors (&{event.anchor}) are not allowed{where}: write the value out"
                    )
                tag = getattr(event, "tag", None)
                if tag is not None:
                    return FieldError("", f"Tags ({tag}) are not allowed{where}: remove the tag")
                if depth == 0 and not isinstance(event, MappingStartEvent):
                    kind = "a list" if isinstance(event, CollectionStartEvent) else "a single value"
                    return FieldError("", f"The top level must be a mapping of keys to values, not {kind}")
                if isinstance(event, CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        return FieldError("", f"The YAML is nested more than {MAX_DEPTH} levels deep{where}")
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
        if documents == 0:
            return FieldError(
                "", "The YAML is empty: it must be a mapping with version, name, deployment and extensions"
            )
        return None
    finally:
        loader.dispose()


def parse_sindri_yaml(text: str) -> ParsedYaml | list[FieldError]:
    """Load `text` with the §7.3 rules. Never raises: bad input comes back as a list of errors."""
    if not isinstance(text, str):
        return [FieldError("", "The YAML must be a string")]
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return [FieldError("", "The YAML is not valid UTF-8 text")]
    if size > MAX_YAML_BYTES:
        return [FieldError("", f"The YAML is {size} bytes; the limit is {MAX_YAML_BYTES} bytes")]
    try:
        problem = _scan_events(text)
        if problem is not None:
            return [problem]
        loader = _StrictLoader(text)
        try:
            document = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        return [_yaml_error(exc)]
    except (ValueError, OverflowError, TypeError) as exc:
        # SafeLoader builds dates and integers with Python's constructors, which reject values such
        # as `2024-13-45` or integers longer than Python's digit limit.
        detail = "a number has too many digits" if "digits" in str(exc) else _clip(str(exc), 200)
        return [FieldError("", f"Invalid YAML value: {detail}")]
    if not isinstance(document, dict):
        return [FieldError("", "The top level must be a mapping of keys to values")]
    return ParsedYaml(document=document, text=text, size_bytes=size)


# --------------------------------------------------------------------------------------------------
# Small helpers


def is_storable_text(value: str) -> bool:
    """False for text with NUL or lone surrogates: valid JSON escapes that PostgreSQL text columns and
    process environments refuse."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(value: Any) -> str:
    """A value as it may appear in a message: short, quoted, never a whole blob."""
    if isinstance(value, str):
        return repr(_clip(value, 80))
    return _clip(repr(value), 80)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _document(doc: ParsedYaml | Mapping[Any, Any] | Any) -> Any:
    return doc.document if isinstance(doc, ParsedYaml) else doc


def _mapping_at(doc: Any, *keys: str) -> Mapping[Any, Any] | None:
    node = doc
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node if isinstance(node, Mapping) else None


def _value_at(doc: Any, *keys: str) -> Any:
    node = doc
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def size_to_bytes(value: Any) -> int | None:
    """`8GB` → 8·2^30, `512MB` → 512·2^20; None for anything else."""
    if not isinstance(value, str):
        return None
    match = SIZE_RE.fullmatch(value)
    if match is None:
        return None
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > 18:
        # Far beyond every limit; also keeps int() away from Python's digit-count guard.
        return 2**80
    return int(digits) * (GIB if match.group(2) == "GB" else MIB)


def canonical_provider(value: str) -> str:
    """Any provider spelling → its stored name (40 §2.3 aliases, `docker-compose` → `docker`)."""
    cleaned = value.strip().lower()
    return PROVIDER_ALIASES.get(cleaned, cleaned)


def deployment_provider(doc: ParsedYaml | Mapping[Any, Any]) -> str | None:
    """The canonical `deployment.provider`, or None when it is missing or not a deployable provider."""
    raw = _value_at(_document(doc), "deployment", "provider")
    if not isinstance(raw, str):
        return None
    provider = canonical_provider(raw)
    return provider if provider in DEPLOYMENT_PROVIDERS else None


def reserved_reason(name: str) -> str | None:
    """Why `name` may not be used as a secret or env name (§7.4, case-insensitive), or None."""
    upper = name.upper()
    if upper in RESERVED_SECRET_EXACT:
        return (
            f"{_show(name)} is a reserved name (the console or the Sindri CLI uses it); choose another name"
        )
    for prefix in RESERVED_SECRET_PREFIXES:
        if upper.startswith(prefix):
            return (
                f"{_show(name)} starts with the reserved prefix {prefix!r} (the console or the Sindri CLI "
                "uses it); choose another name"
            )
    return None


def _extension_name(item: str) -> tuple[str, str | None]:
    name, _, version = item.partition("@")
    return name, (version or None)


# --------------------------------------------------------------------------------------------------
# Validation


class _Checker:
    def __init__(self, known_profiles: Iterable[str]) -> None:
        self.errors: list[FieldError] = []
        self.warnings: list[str] = []
        self.profiles = set(BUILTIN_PROFILES) | {p for p in known_profiles if isinstance(p, str)}

    def error(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))

    def check(self, doc: Any) -> None:
        if not isinstance(doc, Mapping):
            self.error("", "The top level must be a mapping of keys to values")
            return
        self.check_version(doc)
        self.check_name(doc)
        self.check_deployment(doc)
        self.check_extensions(doc)
        self.check_secrets(doc)
        self.check_providers(doc)
        self.check_distro(doc)
        for key in doc:
            if key not in _KNOWN_TOP_LEVEL:
                self.warnings.append(
                    f"Unknown top-level key {_show(key)} is passed to the Sindri CLI unchanged"
                )

    def check_version(self, doc: Mapping[Any, Any]) -> None:
        value = doc.get("version")
        if value is None:
            self.error("version", 'is required: the sindri.yaml format version, such as "3.0"')
            return
        if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
            text = value if isinstance(value, str) else str(value)
            if VERSION_RE.fullmatch(text):
                major = text.partition(".")[0].lstrip("0") or "0"
                if major != "3":
                    self.warnings.append(
                        f"version {text!r}: the console checks sindri.yaml version 3.x; other major versions may not deploy"
                    )
                return
        self.error("version", f'must be a version such as "3.0" (major.minor), not {_show(value)}')

    def check_name(self, doc: Mapping[Any, Any]) -> None:
        value = doc.get("name")
        if value is None:
            self.error("name", "is required: the instance name")
        elif not isinstance(value, str) or not NAME_RE.fullmatch(value):
            self.error(
                "name",
                f"{_show(value)} is not a valid name: 1–63 lower-case letters, digits and '-', starting "
                "with a letter and not ending with '-'",
            )

    def check_deployment(self, doc: Mapping[Any, Any]) -> None:
        deployment = doc.get("deployment")
        if deployment is None:
            self.error("deployment", "is required: a mapping with at least `provider`")
            return
        if not isinstance(deployment, Mapping):
            self.error("deployment", "must be a mapping with at least `provider`")
            return
        self.check_provider(deployment.get("provider"))
        image = deployment.get("image")
        if image is not None and (not isinstance(image, str) or not 1 <= len(image) <= 512):
            self.error("deployment.image", "must be an image reference of 1–512 characters")
        resources = deployment.get("resources")
        if resources is not None:
            if isinstance(resources, Mapping):
                self.check_resources(resources)
            else:
                self.error("deployment.resources", "must be a mapping (memory, cpus, gpu)")
        volumes = deployment.get("volumes")
        if volumes is not None:
            if isinstance(volumes, Mapping):
                self.check_volumes(volumes)
            else:
                self.error("deployment.volumes", "must be a mapping (workspace)")

    def check_provider(self, value: Any) -> None:
        allowed = ", ".join(DEPLOYMENT_PROVIDERS)
        if value is None:
            self.error("deployment.provider", f"is required: one of {allowed}")
            return
        if not isinstance(value, str) or not value.strip():
            self.error("deployment.provider", f"must be one of {allowed}")
            return
        provider = canonical_provider(value)
        if provider in DEPLOYMENT_PROVIDERS:
            return
        if provider in DEVPOD_SIZE_KEYS:
            self.error(
                "deployment.provider",
                f"{_show(value)} is not deployed to directly: use `provider: devpod` with "
                f"`providers.devpod.type: {provider}`, or one of {allowed}",
            )
        else:
            self.error("deployment.provider", f"{_show(value)} is not a provider: use one of {allowed}")

    def check_size(self, path: str, value: Any, low: int, high: int, low_text: str, high_text: str) -> None:
        amount = size_to_bytes(value)
        if amount is None:
            self.error(
                path, f"must be a size such as 512MB or 8GB (digits then MB or GB), not {_show(value)}"
            )
        elif not low <= amount <= high:
            self.error(path, f"{_show(value)} is out of range: {low_text} to {high_text}")

    def check_resources(self, resources: Mapping[Any, Any]) -> None:
        if "memory" in resources:
            self.check_size(
                "deployment.resources.memory", resources["memory"], 256 * MIB, 1024 * GIB, "256MB", "1024GB"
            )
        if "cpus" in resources:
            cpus = resources["cpus"]
            if not _is_int(cpus) or not 1 <= cpus <= 256:
                self.error(
                    "deployment.resources.cpus", f"must be a whole number from 1 to 256, not {_show(cpus)}"
                )
        if "gpu" in resources:
            gpu = resources["gpu"]
            if isinstance(gpu, Mapping):
                self.check_gpu(gpu)
            else:
                self.error(
                    "deployment.resources.gpu", "must be a mapping (enabled, type, count, tier, memory)"
                )

    def check_gpu(self, gpu: Mapping[Any, Any]) -> None:
        base = "deployment.resources.gpu"
        for key in gpu:
            if key not in _GPU_KEYS:
                self.error(_join(base, key), f"unknown GPU setting; allowed: {', '.join(_GPU_KEYS)}")
        if "enabled" in gpu and not isinstance(gpu["enabled"], bool):
            self.error(f"{base}.enabled", "must be true or false")
        if "type" in gpu and gpu["type"] not in _GPU_TYPES:
            self.error(f"{base}.type", f"must be one of {', '.join(_GPU_TYPES)}")
        if "count" in gpu:
            count = gpu["count"]
            if not _is_int(count) or not 1 <= count <= 8:
                self.error(f"{base}.count", f"must be a whole number from 1 to 8, not {_show(count)}")
        if "tier" in gpu and gpu["tier"] not in _GPU_TIERS:
            self.error(f"{base}.tier", f"must be one of {', '.join(_GPU_TIERS)}")
        if "memory" in gpu and size_to_bytes(gpu["memory"]) is None:
            self.error(f"{base}.memory", f"must be a size such as 16GB or 512MB, not {_show(gpu['memory'])}")

    def check_volumes(self, volumes: Mapping[Any, Any]) -> None:
        workspace = volumes.get("workspace")
        if workspace is None:
            return
        if not isinstance(workspace, Mapping):
            self.error("deployment.volumes.workspace", "must be a mapping (path, size)")
            return
        if "path" in workspace:
            self.check_workspace_path(workspace["path"])
        if "size" in workspace:
            self.check_size(
                "deployment.volumes.workspace.size", workspace["size"], GIB, 65536 * GIB, "1GB", "65536GB"
            )

    def check_workspace_path(self, value: Any) -> None:
        path = "deployment.volumes.workspace.path"
        if not isinstance(value, str) or not value.startswith("/"):
            self.error(
                path, f"must be an absolute path such as /home/developer/workspace, not {_show(value)}"
            )
            return
        # normpath resolves `..` so `/home/../etc` is seen as `/etc`; POSIX keeps a leading `//`.
        normal = "/" + posixpath.normpath(value).lstrip("/")
        if normal == "/":
            self.error(path, "must not be the root directory")
            return
        for system_dir in _SYSTEM_DIRS:
            if normal == system_dir or normal.startswith(system_dir + "/"):
                self.error(
                    path,
                    f"{_show(value)} is inside the system directory {system_dir}; use a home or data path",
                )
                return

    def check_extensions(self, doc: Mapping[Any, Any]) -> None:
        extensions = doc.get("extensions")
        if extensions is None:
            self.error("extensions", "is required: a mapping with `active: [...]` or `profile: <name>`")
            return
        if isinstance(extensions, list):
            self.error(
                "extensions",
                "use extensions.active: a list here is the old format; write `extensions: {active: [...]}`",
            )
            return
        if not isinstance(extensions, Mapping):
            self.error("extensions", "must be a mapping with `active: [...]` or `profile: <name>`")
            return
        for key in extensions:
            if key not in _EXTENSION_KEYS:
                self.error(_join("extensions", key), f"unknown key; allowed: {', '.join(_EXTENSION_KEYS)}")
        has_profile = "profile" in extensions
        has_active = "active" in extensions
        if has_profile and has_active:
            self.error("extensions", "set either extensions.profile or extensions.active, not both")
        elif not has_profile and not has_active:
            self.error("extensions", "needs extensions.active (a list of extensions) or extensions.profile")
        if "additional" in extensions and not has_profile:
            self.error("extensions.additional", "is only allowed together with extensions.profile")
        if has_profile:
            profile = extensions["profile"]
            if not isinstance(profile, str) or profile not in self.profiles:
                known = ", ".join(sorted(self.profiles))
                self.error("extensions.profile", f"{_show(profile)} is not a known profile; known: {known}")
        for key in ("active", "additional"):
            if key in extensions:
                self.check_extension_list(f"extensions.{key}", extensions[key])
        if "autoInstall" in extensions and not isinstance(extensions["autoInstall"], bool):
            self.error("extensions.autoInstall", "must be true or false")

    def check_extension_list(self, path: str, value: Any) -> None:
        if not isinstance(value, list):
            self.error(path, "must be a list of extension names such as [git, python3]")
            return
        if not 1 <= len(value) <= MAX_EXTENSIONS:
            self.error(path, f"must list 1 to {MAX_EXTENSIONS} extensions, not {len(value)}")
        first_index: dict[str, int] = {}
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if not isinstance(item, str) or not EXTENSION_RE.fullmatch(item):
                self.error(
                    item_path,
                    f"{_show(item)} is not an extension name: a lower-case letter or digit, then up to 63 of "
                    "[a-z0-9._-], optionally @<version>",
                )
                continue
            # Unique by name, not by text: `git` and `git@2.45` together would be contradictory.
            name, _ = _extension_name(item)
            if name in first_index:
                self.error(item_path, f"extension {name!r} is already listed at index {first_index[name]}")
            else:
                first_index[name] = index

    def check_secrets(self, doc: Mapping[Any, Any]) -> None:
        secrets = doc.get("secrets")
        if secrets is None:
            return
        if not isinstance(secrets, list):
            self.error("secrets", "must be a list of {name, source: env} entries")
            return
        if len(secrets) > MAX_SECRETS:
            self.error("secrets", f"lists {len(secrets)} secrets; at most {MAX_SECRETS} are allowed")
        first_index: dict[str, int] = {}
        for index, entry in enumerate(secrets):
            base = f"secrets[{index}]"
            if not isinstance(entry, Mapping):
                self.error(base, "must be a mapping with name and source")
                continue
            name = entry.get("name")
            if name is None:
                self.error(f"{base}.name", "is required: the environment variable name")
            elif not isinstance(name, str) or not SECRET_NAME_RE.fullmatch(name):
                self.error(
                    f"{base}.name",
                    f"{_show(name)} is not a valid secret name: an upper-case letter, then up to 127 of [A-Z0-9_]",
                )
            elif name in first_index:
                self.error(
                    f"{base}.name", f"secret {name!r} is already declared at secrets[{first_index[name]}]"
                )
            else:
                # Reserved names are reported by reserved_secret_violations, called from validate.
                first_index[name] = index
            source = entry.get("source")
            source_error = _secret_source_problem(source)
            if source is None:
                self.error(f"{base}.source", "is required and must be `env`")
            elif source_error is not None:
                self.error(f"{base}.source", source_error)
            if "required" in entry and not isinstance(entry["required"], bool):
                self.error(f"{base}.required", "must be true or false")
            if "fromFile" in entry:
                self.error(f"{base}.fromFile", _FROM_FILE_MESSAGE)

    def check_providers(self, doc: Mapping[Any, Any]) -> None:
        providers = doc.get("providers")
        if providers is None:
            return
        if not isinstance(providers, Mapping):
            self.error("providers", "must be a mapping of provider name to its settings")
            return
        for key, settings in providers.items():
            if isinstance(settings, Mapping) and settings.get("region") is not None:
                region = settings["region"]
                if not isinstance(region, str) or not 1 <= len(region) <= 64:
                    self.error(
                        _join(_join("providers", key), "region"), "must be a region name of 1–64 characters"
                    )
        devpod = _mapping_at(providers, "devpod")
        if devpod is None:
            return
        for machine_type, size_key in DEVPOD_SIZE_KEYS.items():
            value = _value_at(devpod, machine_type, size_key)
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 64):
                self.error(
                    f"providers.devpod.{machine_type}.{size_key}",
                    "must be a machine size name of 1–64 characters",
                )

    def check_distro(self, doc: Mapping[Any, Any]) -> None:
        value = doc.get("distro")
        if value is None:
            return
        # The schema subset does not define `distro`; it is read for drift (§10.1) and never rejected.
        if not isinstance(value, str) or value.strip().lower() not in DISTROS:
            self.warnings.append(
                f"distro {_show(value)} is not one of {', '.join(DISTROS)}; it is passed to the CLI but not recorded"
            )


_FROM_FILE_MESSAGE = (
    "is not allowed: it makes the CLI read a file on the console's server; send the value in the "
    "request's secrets or store it in the console vault"
)


def _secret_source_problem(source: Any) -> str | None:
    if source == "env":
        return None
    if source == "file":
        return (
            "`file` is not allowed: it makes the CLI read a path on the console's server; use `env` and send "
            "the value in the request's secrets or the console vault"
        )
    if source == "vault":
        return (
            "`vault` is not allowed: it would use the console's own HashiCorp Vault credentials; use `env` "
            "and store the secret in the console vault"
        )
    return f"must be `env`, not {_show(source)}"


def validate_sindri_yaml(
    doc: ParsedYaml | Mapping[Any, Any], *, known_profiles: Iterable[str] = ()
) -> ValidationResult:
    """Every §7.3 violation of `doc` with its path, plus warnings. `known_profiles` are the CLI
    registry's profile names (30-admin §10), accepted together with the built-in list."""
    document = _document(doc)
    checker = _Checker(known_profiles)
    checker.check(document)
    if isinstance(document, Mapping):
        checker.errors.extend(reserved_secret_violations(document, ()))
    return ValidationResult(errors=checker.errors, warnings=checker.warnings)


# --------------------------------------------------------------------------------------------------
# Secrets and hardening (§7.4, §7.5)


def _env_name_violations(document: Any) -> list[FieldError]:
    """Reserved keys of every mapping called `env` / `environment`, anywhere in the document.

    Lists of `KEY=value` strings (the docker-compose form) are read the same way, since they set the
    same variables.
    """
    found: list[FieldError] = []
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, Mapping):
            children = list(node.items())
            for key, value in children:
                key_path = _join(path, key)
                if isinstance(key, str) and key.lower() in _ENV_MAPPING_NAMES:
                    found.extend(_reserved_in_env(key_path, value))
            stack.extend((_join(path, key), value) for key, value in reversed(children))
        elif isinstance(node, list):
            stack.extend((f"{path}[{index}]", item) for index, item in reversed(list(enumerate(node))))
    return found


def _reserved_in_env(path: str, value: Any) -> list[FieldError]:
    found: list[FieldError] = []
    if isinstance(value, Mapping):
        for name in value:
            if isinstance(name, str):
                reason = reserved_reason(name.strip())
                if reason is not None:
                    found.append(FieldError(_join(path, name), reason))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                reason = reserved_reason(item.partition("=")[0].strip())
                if reason is not None:
                    found.append(FieldError(f"{path}[{index}]", reason))
    return found


def reserved_secret_violations(
    doc: ParsedYaml | Mapping[Any, Any],
    body_secret_names: Iterable[str] = (),
    *,
    yaml_field_prefix: str = "",
) -> list[FieldError]:
    """Every reserved name (§7.4, case-insensitive) in `secrets[].name`, in the keys of any `env` /
    `environment` mapping, and in the request body's secret names.

    YAML findings carry their path under `yaml_field_prefix`; body findings carry `secrets.<NAME>`.
    """
    document = _document(doc)
    found: list[FieldError] = []
    secrets = document.get("secrets") if isinstance(document, Mapping) else None
    if isinstance(secrets, list):
        for index, entry in enumerate(secrets):
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if isinstance(name, str):
                reason = reserved_reason(name.strip())
                if reason is not None:
                    found.append(FieldError(f"secrets[{index}].name", reason))
    found.extend(_env_name_violations(document))
    found = [error.under(yaml_field_prefix) for error in found]
    for name in body_secret_names:
        if isinstance(name, str):
            reason = reserved_reason(name.strip())
            if reason is not None:
                found.append(FieldError(f"secrets.{name}", reason))
    return found


def _truthy(value: Any) -> bool:
    # A quoted "true" is not a YAML boolean, but a lenient reader may still take it as one.
    if value is True or (_is_int(value) and value != 0):
        return True
    return isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1")


def hardening_violations(
    doc: ParsedYaml | Mapping[Any, Any],
    allow_privileged_docker: bool = False,
    allowed_docker_hosts: Sequence[str] = (),
) -> list[FieldError]:
    """The §7.5 rules that look at the document: secret sources, privileged Docker options and Docker
    hosts. Secret-source problems are also schema errors (§7.3); callers stop at the first failing
    stage (§7.6), so they are not reported twice.

    The Docker options are checked whatever `deployment.provider` says, because a template deployment
    can replace the provider after the template was written.
    """
    document = _document(doc)
    found: list[FieldError] = []
    if not isinstance(document, Mapping):
        return found
    secrets = document.get("secrets")
    if isinstance(secrets, list):
        for index, entry in enumerate(secrets):
            if not isinstance(entry, Mapping):
                continue
            if "source" in entry:
                problem = _secret_source_problem(entry["source"])
                if problem is not None and entry["source"] in ("file", "vault"):
                    found.append(FieldError(f"secrets[{index}].source", problem))
            if "fromFile" in entry:
                found.append(FieldError(f"secrets[{index}].fromFile", _FROM_FILE_MESSAGE))

    docker = _mapping_at(document, "providers", "docker")
    if docker is not None and not allow_privileged_docker:
        if _truthy(docker.get("privileged")):
            found.append(
                FieldError(
                    "providers.docker.privileged",
                    f"privileged containers control the console's host and are refused; {_PRIVILEGED_HINT}",
                )
            )
        network = docker.get("network")
        if isinstance(network, str) and network.strip().lower() == "host":
            found.append(
                FieldError(
                    "providers.docker.network",
                    f"host networking exposes the console's host network and is refused; {_PRIVILEGED_HINT}",
                )
            )
        mode = _value_at(docker, "dind", "mode")
        if isinstance(mode, str) and mode.strip().lower() in _UNSAFE_DIND_MODES:
            found.append(
                FieldError(
                    "providers.docker.dind.mode",
                    f"Docker-in-Docker mode {_show(mode)} gives the instance the host's Docker and is refused; "
                    f"use sysbox or auto, or {_PRIVILEGED_HINT}",
                )
            )
        runtime = docker.get("runtime")
        if runtime is not None and runtime not in _SAFE_DOCKER_RUNTIMES:
            found.append(
                FieldError(
                    "providers.docker.runtime",
                    f"runtime {_show(runtime)} is refused; use one of {', '.join(_SAFE_DOCKER_RUNTIMES)}, "
                    f"or {_PRIVILEGED_HINT}",
                )
            )

    devpod_host = _value_at(document, "providers", "devpod", "docker", "dockerHost")
    if devpod_host is not None and (
        not isinstance(devpod_host, str) or devpod_host not in allowed_docker_hosts
    ):
        found.append(
            FieldError(
                "providers.devpod.docker.dockerHost", _docker_host_message(devpod_host, allowed_docker_hosts)
            )
        )
    return found


def _docker_host_message(value: Any, allowed: Sequence[str]) -> str:
    if not allowed:
        return (
            f"{_show(value)} is refused: this console allows no Docker hosts (DEPLOY_DOCKER_HOSTS is empty)"
        )
    return f"{_show(value)} is not one of the Docker hosts this console allows: {', '.join(allowed)}"


def docker_host_violation(
    docker_host: str | None, provider: str | None, allowed_docker_hosts: Sequence[str]
) -> FieldError | None:
    """The body's `dockerHost` (§7.2): exactly one of `DEPLOY_DOCKER_HOSTS`, provider `docker` only."""
    if docker_host is None:
        return None
    if provider is None or canonical_provider(provider) != "docker":
        return FieldError("dockerHost", "is only used with provider docker")
    if docker_host not in allowed_docker_hosts:
        return FieldError("dockerHost", _docker_host_message(docker_host, allowed_docker_hosts))
    return None


# --------------------------------------------------------------------------------------------------
# What a deployment or template derives from a document


def declared_extensions(doc: ParsedYaml | Mapping[Any, Any]) -> list[str]:
    """§8.4: `extensions.active`, or `extensions.additional` with a profile, or the items of a legacy
    list; names without `@version`, order kept, duplicates removed."""
    extensions = _value_at(_document(doc), "extensions")
    items: Any = None
    if isinstance(extensions, list):
        items = extensions
    elif isinstance(extensions, Mapping):
        items = extensions.get("active") if "active" in extensions else extensions.get("additional")
    if not isinstance(items, list):
        return []
    names: list[str] = []
    for item in items:
        if isinstance(item, str):
            name, _ = _extension_name(item.strip())
            if name and name not in names:
                names.append(name)
    return names


def declared_region(doc: ParsedYaml | Mapping[Any, Any]) -> str | None:
    """`providers.<provider>.region` of the document (§7.2's default region)."""
    document = _document(doc)
    raw = _value_at(document, "deployment", "provider")
    if not isinstance(raw, str):
        return None
    for key in dict.fromkeys((canonical_provider(raw), raw, raw.strip())):
        region = _value_at(document, "providers", key, "region")
        if isinstance(region, str) and 1 <= len(region) <= 64:
            return region
    return None


def sizing(doc: ParsedYaml | Mapping[Any, Any]) -> tuple[int | None, str | None]:
    """(diskGb, sizeId) of a new instance (§7.6).

    diskGb is the workspace size in GiB rounded up; sizeId is only known for devpod, from
    `providers.devpod.<type>.<size key>`.
    """
    document = _document(doc)
    disk_gb: int | None = None
    size_bytes = size_to_bytes(_value_at(document, "deployment", "volumes", "workspace", "size"))
    if size_bytes is not None and size_bytes > 0:
        disk_gb = math.ceil(size_bytes / GIB)
    size_id: str | None = None
    if deployment_provider(document) == "devpod":
        machine_type = _value_at(document, "providers", "devpod", "type")
        size_key = DEVPOD_SIZE_KEYS.get(machine_type) if isinstance(machine_type, str) else None
        if size_key is not None:
            value = _value_at(document, "providers", "devpod", machine_type, size_key)
            if isinstance(value, str) and 1 <= len(value) <= 64:
                size_id = value
    return disk_gb, size_id


def _extension_entries(items: Any) -> list[tuple[str, str | None]]:
    entries: list[tuple[str, str | None]] = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, str) and item.strip():
                entries.append(_extension_name(item.strip()))
    return entries


def declared_config(
    doc: ParsedYaml | Mapping[Any, Any],
    *,
    provider: str | None = None,
    region: str | None = None,
    profile_extensions: Mapping[str, Sequence[str]] | None = None,
    extra_secret_names: Iterable[str] = (),
    known_secret_names: Iterable[str] = (),
) -> dict[str, Any]:
    """The normalised declared configuration a deployment stores (§7.1 `declared`, shaped as §10.1).

    `provider` / `region` are the values the deployment accepted (they win over the document's);
    `profile_extensions` maps profile names to their extension lists (30-admin profiles) — a profile
    missing from it leaves `extensionsComplete` false; `extra_secret_names` are the request's
    body-only secrets; `known_secret_names` are the names with a vault value bound to the instance.
    Lists are sorted so equal configurations serialise identically (the drift `configHash`).
    """
    document = _document(doc)
    if not isinstance(document, Mapping):
        document = {}

    raw_name = document.get("name")
    accepted_provider = canonical_provider(provider) if provider else deployment_provider(document)
    if accepted_provider is None:
        raw_provider = _value_at(document, "deployment", "provider")
        accepted_provider = canonical_provider(raw_provider) if isinstance(raw_provider, str) else None

    distro_value = document.get("distro")
    distro = distro_value.strip().lower() if isinstance(distro_value, str) else None
    if distro not in DISTROS:
        distro = None

    extensions = document.get("extensions")
    profile: str | None = None
    complete = True
    merged: dict[str, str | None] = {}
    if (
        isinstance(extensions, Mapping)
        and "active" not in extensions
        and isinstance(extensions.get("profile"), str)
    ):
        profile = extensions["profile"]
        known = (profile_extensions or {}).get(profile)
        if known is None:
            complete = False
        else:
            merged.update(_extension_entries(list(known)))
        # `additional` pins win over the profile's own entries of the same name.
        merged.update(_extension_entries(extensions.get("additional")))
    elif isinstance(extensions, Mapping):
        merged.update(_extension_entries(extensions.get("active")))
    elif isinstance(extensions, list):
        merged.update(_extension_entries(extensions))
        complete = bool(merged)

    resources = _mapping_at(document, "deployment", "resources") or {}
    cpus = resources.get("cpus")
    memory = resources.get("memory")
    workspace_size = _value_at(document, "deployment", "volumes", "workspace", "size")

    known_values = {name for name in known_secret_names if isinstance(name, str)}
    secret_names: list[str] = []
    secrets = document.get("secrets")
    if isinstance(secrets, list):
        secret_names.extend(
            entry["name"]
            for entry in secrets
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str)
        )
    secret_names.extend(name for name in extra_secret_names if isinstance(name, str))
    # The console's own SINDRI_* variables are added by the job and are not part of the declaration.
    unique_secrets = sorted({name for name in secret_names if not name.upper().startswith("SINDRI_")})

    return {
        "name": raw_name if isinstance(raw_name, str) else None,
        "provider": accepted_provider,
        "region": region if region is not None else declared_region(document),
        "distro": distro,
        "profile": profile,
        "extensions": [{"name": name, "version": merged[name]} for name in sorted(merged)],
        "extensionsComplete": complete,
        "resources": {
            "cpus": cpus if _is_int(cpus) else None,
            "memoryBytes": size_to_bytes(memory),
            "memory": memory if size_to_bytes(memory) is not None else None,
        },
        "workspaceSizeBytes": size_to_bytes(workspace_size),
        "workspaceSize": workspace_size if size_to_bytes(workspace_size) is not None else None,
        "secrets": [{"name": name, "valueKnown": name in known_values} for name in unique_secrets],
    }


class _PlainDumper(yaml.SafeDumper):
    # Shared sub-objects must be written out in full: the parser refuses anchors and aliases.
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML writes NEL and the Unicode line separators unquoted, and reads them back as spaces or
    # line breaks; double quotes escape them, so the text reads back unchanged.
    if any(mark in data for mark in ("\x85", "\u2028", "\u2029")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    return dumper.represent_str(data)


_PlainDumper.add_representer(str, _represent_text)


def apply_overrides(
    doc: ParsedYaml | Mapping[Any, Any], name: str | None = None, provider: str | None = None
) -> str:
    """YAML text of `doc` with `name` and `deployment.provider` replaced (template deployments, §7.2).

    Key order is kept. Comments of the original text are not; the result is re-validated by the
    caller like any submitted YAML. A provider alias is written in its canonical spelling.
    """
    document = copy.deepcopy(dict(_document(doc)))
    if name is not None:
        document["name"] = name
    if provider is not None:
        canonical = canonical_provider(provider)
        written = canonical if canonical in DEPLOYMENT_PROVIDERS else provider
        deployment = document.get("deployment")
        if isinstance(deployment, Mapping):
            deployment = dict(deployment)
            deployment["provider"] = written
        else:
            deployment = {"provider": written}
        document["deployment"] = deployment
    return yaml.dump(
        document,
        Dumper=_PlainDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1000,
    )


def resolved_yaml(
    doc: ParsedYaml | Mapping[Any, Any],
    *,
    name: str,
    provider: str,
    add_secret_names: Sequence[str] = (),
    drop_secret_names: Iterable[str] = (),
) -> str:
    """The YAML a deployment job hands to the CLI (§7.7 step 2).

    `name` and `deployment.provider` as accepted; `secrets` without the unresolved optional entries
    (`drop_secret_names`) and extended with `{name, source: env}` for each of `add_secret_names` that is
    not declared yet (body-only secrets and the console's SINDRI_* variables). The values travel in the
    CLI's environment only, never in this file.
    """
    document = copy.deepcopy(dict(_document(doc)))
    document["name"] = name
    deployment = document.get("deployment")
    deployment = dict(deployment) if isinstance(deployment, Mapping) else {}
    deployment["provider"] = provider
    document["deployment"] = deployment
    dropped = set(drop_secret_names)
    entries = [
        entry
        for entry in (document.get("secrets") or [])
        if not (isinstance(entry, Mapping) and entry.get("name") in dropped)
    ]
    declared = {entry.get("name") for entry in entries if isinstance(entry, Mapping)}
    for secret_name in add_secret_names:
        if secret_name not in declared:
            entries.append({"name": secret_name, "source": "env"})
            declared.add(secret_name)
    if entries:
        document["secrets"] = entries
    else:
        document.pop("secrets", None)
    return yaml.dump(
        document,
        Dumper=_PlainDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1000,
    )
