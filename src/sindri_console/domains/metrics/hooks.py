"""Background loops of the metrics domain: the rollup loop and the shared retention loop (10-core §16.2)."""

from __future__ import annotations

from sindri_console.domains.metrics import rollup
from sindri_console.loops import retention
from sindri_console.loops.base import LoopSpec
from sindri_console.runtime import Runtime


async def startup(rt: Runtime) -> None:
    rt.loops.add(LoopSpec(
        "metrics-rollup", rollup.INTERVAL_SECONDS, lambda: rollup.rollup_tick(rt.db),
        lease=rollup.LEASE, lease_ttl=rollup.LEASE_TTL_SECONDS,
    ))
    rt.loops.add(LoopSpec(
        "retention", retention.INTERVAL_SECONDS, lambda: retention.run_retention(rt),
        lease=retention.LEASE, lease_ttl=retention.LEASE_TTL_SECONDS,
        timeout=retention.RUN_BUDGET_SECONDS + 30,
    ))
