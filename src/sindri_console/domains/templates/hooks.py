"""Start-up: load the official deployment templates idempotently (20-ops §8.1, §8.3)."""

from __future__ import annotations

from sindri_console.domains.templates.service import seed_official_templates
from sindri_console.runtime import Runtime


async def startup(rt: Runtime) -> None:
    await seed_official_templates(rt)
