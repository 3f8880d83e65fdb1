"""Start-up: one Sindri CLI resolver per process, resolved in the background (10-core §2)."""

from __future__ import annotations

from sindri_console.kit.cli_runner import SindriCli
from sindri_console.runtime import Runtime


async def startup(rt: Runtime) -> None:
    cli = SindriCli(rt.settings.SINDRI_BIN_PATH)
    rt.services["cli"] = cli
    cli.start_background_resolution()
