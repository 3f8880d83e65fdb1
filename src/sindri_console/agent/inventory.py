"""Package inventory for the BOM: ``packages:report`` (40-agent-protocol §4.12, §10.3)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sindri_console.agent.collectors import _run_tool
from sindri_console.agent.config import AgentConfig
from sindri_console.agent.util import now_iso, read_os_release

TOOL_SECONDS = 120.0
MAX_PACKAGES = 50_000
MAX_LOCATIONS = 5
LOCKFILE_DEPTH = 4

_DEB_FORMAT = "${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\n"
_RPM_FORMAT = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{LICENSE}\\n"
_PYTHON_LISTING = (
    "import importlib.metadata as m, json, sys\n"
    "out = [[d.metadata.get('Name'), d.version, d.metadata.get('License-Expression') or d.metadata.get('License')]\n"
    "       for d in m.distributions() if d.metadata.get('Name')]\n"
    "json.dump({'executable': sys.executable, 'packages': out}, sys.stdout)\n"
)

_OS_ECOSYSTEMS = {
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "alpine": "Alpine",
    "rhel": "Red Hat",
    "rocky": "Rocky Linux",
    "almalinux": "AlmaLinux",
    "fedora": "Fedora",
}


def os_ecosystem(release: dict[str, str]) -> str | None:
    ident = release.get("ID", "").lower()
    if ident.startswith("opensuse") or ident in {"sles", "suse"}:
        return "openSUSE"
    return _OS_ECOSYSTEMS.get(ident)


def _package(
    name: str,
    version: str,
    ecosystem: str,
    release: str | None = None,
    arch: str | None = None,
    source_name: str | None = None,
    source_version: str | None = None,
    license_: str | None = None,
    location: str | None = None,
) -> dict[str, Any] | None:
    name, version = name.strip(), version.strip()
    if not name or not version or len(name) > 256 or len(version) > 128:
        return None
    return {
        "name": name,
        "version": version,
        "ecosystem": ecosystem,
        "ecosystemRelease": release[:32] if release else None,
        "arch": arch[:32] if arch else None,
        "sourceName": source_name[:256] if source_name else None,
        "sourceVersion": source_version or None,
        "license": license_[:128] if license_ and license_.strip() else None,
        "locations": [location] if location else [],
    }


def parse_dpkg(text: str, ecosystem: str, release: str | None) -> list[dict[str, Any]]:
    items = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 5:
            continue
        name, version, arch, source_name, source_version = fields[:5]
        item = _package(name, version, ecosystem, release, arch, source_name or name, source_version or version)
        if item:
            items.append(item)
    return items


def parse_rpm(text: str, ecosystem: str, release: str | None) -> list[dict[str, Any]]:
    items = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 5:
            continue
        name, version, arch, source_rpm, license_ = fields[:5]
        # foo-1.2-3.el9.src.rpm → foo: the last two dash-separated parts are version and release.
        source_name = source_rpm.removesuffix(".src.rpm").rsplit("-", 2)[0] if source_rpm not in ("", "(none)") else None
        item = _package(name, version, ecosystem, release, arch, source_name, None, license_)
        if item:
            items.append(item)
    return items


def parse_apk(text: str, release: str | None) -> list[dict[str, Any]]:
    items = []
    for line in text.splitlines():
        package = line.split(" - ", 1)[0].strip()
        parts = package.rsplit("-", 2)
        if len(parts) != 3:
            continue
        item = _package(parts[0], f"{parts[1]}-{parts[2]}", "Alpine", release)
        if item:
            items.append(item)
    return items


def parse_lockfile(data: Any, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    packages = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(packages, dict):
        return items
    for key, entry in packages.items():
        if not key or not isinstance(entry, dict) or "node_modules/" not in key:
            continue
        name = entry.get("name") or key.rsplit("node_modules/", 1)[1]
        version = entry.get("version")
        if isinstance(name, str) and isinstance(version, str):
            item = _package(name, version, "npm", license_=entry.get("license") if isinstance(entry.get("license"), str) else None, location=path)
            if item:
                items.append(item)
    return items


def find_lockfiles(roots: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for root in roots:
        root = os.path.expanduser(root)
        base_depth = root.rstrip(os.sep).count(os.sep)
        for directory, subdirs, files in os.walk(root):
            depth = directory.rstrip(os.sep).count(os.sep) - base_depth
            subdirs[:] = [d for d in subdirs if d != "node_modules" and not d.startswith(".")] if depth < LOCKFILE_DEPTH else []
            if "package-lock.json" in files:
                found.append(os.path.join(directory, "package-lock.json"))
    return found


def read_lockfiles(roots: tuple[str, ...]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for lockfile in find_lockfiles(roots):
        try:
            with open(lockfile, encoding="utf-8") as handle:
                found.extend(parse_lockfile(json.load(handle), lockfile))
        except (OSError, ValueError):
            continue
    return found


class Inventory:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    async def _collector(
        self,
        ecosystem: str,
        tool: str,
        run: Callable[[], Awaitable[list[dict[str, Any]]]] | None,
        collectors: list[dict[str, Any]],
        packages: list[dict[str, Any]],
    ) -> None:
        started = time.monotonic()
        entry: dict[str, Any] = {"ecosystem": ecosystem, "tool": tool, "available": run is not None, "count": 0}
        if run is not None:
            try:
                found = await run()
                entry["count"] = len(found)
                packages.extend(found)
            except TimeoutError:
                entry["error"] = f"{tool} did not finish within {int(TOOL_SECONDS)} s"
            except (OSError, ValueError, RuntimeError) as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"[:512]
        entry["durationMs"] = int((time.monotonic() - started) * 1000)
        collectors.append(entry)

    def _os_runner(
        self,
        exe: str,
        argv: Callable[[str], list[str]],
        parser: Callable[[str, str, str | None], list[dict[str, Any]]],
        ecosystem: str | None,
        version_id: str | None,
        release: dict[str, str],
    ) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
        async def run() -> list[dict[str, Any]]:
            if ecosystem is None:
                raise RuntimeError(f"distribution {release.get('ID') or 'unknown'!r} has no OSV ecosystem")
            return parser(await self._output(argv(exe)), ecosystem, version_id)

        return run

    @staticmethod
    async def _output(argv: list[str]) -> str:
        code, out, err = await _run_tool(argv, TOOL_SECONDS)
        if code != 0:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"{os.path.basename(argv[0])} exited with {code}" + (f": {detail[-1]}" if detail else ""))
        return out.decode("utf-8", "replace")

    async def collect(self) -> dict[str, Any]:
        release = read_os_release()
        os_release: dict[str, Any] = {"id": release.get("ID"), "versionId": release.get("VERSION_ID")}
        if release.get("VERSION_CODENAME"):
            os_release["versionCodename"] = release["VERSION_CODENAME"]
        if release.get("NAME"):
            os_release["name"] = release["NAME"]
        ecosystem = os_ecosystem(release)
        version_id = release.get("VERSION_ID")
        collectors: list[dict[str, Any]] = []
        packages: list[dict[str, Any]] = []

        os_tools = [
            ("dpkg-query", lambda exe: [exe, "-W", "-f", _DEB_FORMAT], parse_dpkg),
            ("rpm", lambda exe: [exe, "-qa", "--queryformat", _RPM_FORMAT], parse_rpm),
        ]
        any_os_tool = False
        for tool, argv, parser in os_tools:
            exe = shutil.which(tool)
            if exe is None:
                continue
            any_os_tool = True
            await self._collector(
                ecosystem or "unknown", tool, self._os_runner(exe, argv, parser, ecosystem, version_id, release),
                collectors, packages,
            )
        apk = shutil.which("apk")
        if apk:
            any_os_tool = True
            alpine_release = ".".join((version_id or "").split(".")[:2]) or None

            async def run_apk() -> list[dict[str, Any]]:
                return parse_apk(await self._output([apk, "info", "-vv"]), alpine_release)

            await self._collector("Alpine", "apk", run_apk, collectors, packages)
        if not any_os_tool:
            await self._collector(ecosystem or "unknown", "dpkg-query", None, collectors, packages)

        for interpreter in self.config.pythons:
            path = shutil.which(interpreter) if os.sep not in interpreter else interpreter
            runner = None
            if path and os.access(path, os.X_OK):
                def python_runner(exe: str = path) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
                    async def run_python() -> list[dict[str, Any]]:
                        listing = json.loads(await self._output([exe, "-c", _PYTHON_LISTING]))
                        where = listing.get("executable") or exe
                        found = []
                        for name, version, license_ in listing.get("packages", []):
                            item = _package(str(name), str(version), "PyPI", license_=license_ if isinstance(license_, str) else None, location=where)
                            if item:
                                found.append(item)
                        return found
                    return run_python
                runner = python_runner()
            await self._collector("PyPI", interpreter, runner, collectors, packages)

        npm = shutil.which("npm")

        async def run_npm() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            if npm:
                code, out, _ = await _run_tool([npm, "ls", "-g", "--json", "--depth=0"], TOOL_SECONDS)
                listing = json.loads(out.decode("utf-8", "replace") or "{}") if out else {}
                deps = listing.get("dependencies") if isinstance(listing, dict) else None
                for name, info in (deps or {}).items():
                    if isinstance(info, dict) and isinstance(info.get("version"), str):
                        item = _package(name, info["version"], "npm", location="npm -g")
                        if item:
                            found.append(item)
            found.extend(await asyncio.to_thread(read_lockfiles, self.config.npm_roots))
            return found

        await self._collector("npm", "npm", run_npm, collectors, packages)

        merged: dict[tuple[str, str, str], dict[str, Any]] = {}
        for item in packages:
            key = (item["ecosystem"], item["name"], item["version"])
            known = merged.get(key)
            if known is None:
                merged[key] = item
            else:
                for location in item["locations"]:
                    if location not in known["locations"] and len(known["locations"]) < MAX_LOCATIONS:
                        known["locations"].append(location)
        unique = list(merged.values())
        return {
            "timestamp": now_iso(),
            "osRelease": os_release,
            "collectors": collectors,
            "truncated": len(unique) > MAX_PACKAGES,
            "packages": unique[:MAX_PACKAGES],
        }
