"""Version facts (10-core §2): served from the CLI cache, never by spawning on the request path."""

from __future__ import annotations

from typing import Any

import sindri_console
from sindri_console.kit.cli_runner import CliFacts, SindriCli
from sindri_console.kit.cli_runner import min_instance_version as _min_version
from sindri_console.kit.clock import to_iso
from sindri_console.runtime import Runtime


def cli_of(rt: Runtime) -> SindriCli:
    cli = rt.services.get("cli")
    if cli is None:
        cli = SindriCli(rt.settings.SINDRI_BIN_PATH)
        rt.services["cli"] = cli
    return cli  # type: ignore[no-any-return]


def min_instance_version(rt: Runtime) -> tuple[str | None, str | None]:
    return _min_version(rt.settings.SINDRI_MIN_INSTANCE_VERSION, cli_of(rt).cached_facts())


async def version_info(rt: Runtime) -> dict[str, Any]:
    """Waits for the single in-flight resolution when none has finished yet (at most 15 s)."""
    facts: CliFacts = await cli_of(rt).resolve()
    min_version, source = _min_version(rt.settings.SINDRI_MIN_INSTANCE_VERSION, facts)
    return {
        "apiVersion": "v1",
        "consoleApi": sindri_console.__version__,
        "cliAvailable": facts.available,
        "sindriCli": facts.version if facts.available else None,
        "cliTarget": facts.target if facts.available else None,
        "cliCommit": facts.commit if facts.available else None,
        "cliBuildDate": facts.build_date if facts.available else None,
        "cliResolvedAt": to_iso(facts.resolved_at),
        "minInstanceVersion": min_version,
        "minInstanceVersionSource": source,
    }
