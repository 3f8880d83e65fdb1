"""Start-up: when the shipped region table changed, recompute the table-derived geo of live instances."""

from __future__ import annotations

import structlog
from sqlalchemy import select

from sindri_console.domains.instances.geo import resolve_geo, table_version
from sindri_console.kit.clock import utcnow
from sindri_console.loops.base import try_acquire_lease
from sindri_console.models.instance import Instance
from sindri_console.models.lease import SystemState
from sindri_console.runtime import Runtime

log = structlog.get_logger("sindri_console.instances")
STATE_KEY = "region-table-version"


async def recompute_geo_if_table_changed(rt: Runtime) -> int:
    """Idempotent and lease-guarded, so N replicas starting together do the work once."""
    version = table_version()
    async with rt.db.read() as s:
        current = await s.scalar(select(SystemState.value).where(SystemState.name == STATE_KEY))
    if current == version:
        return 0
    if not await try_acquire_lease(rt.db, "geo-recompute", rt.replica_id, 60):
        return 0
    st = rt.settings
    changed = 0
    async with rt.db.write() as s:
        rows = (await s.scalars(select(Instance).where(
            Instance.status.not_in(("DESTROYED", "DEREGISTERED")),
            Instance.geo_source.in_(("REGION_TABLE", "DEFAULT"))))).all()
        for inst in rows:
            geo = resolve_geo(provider=inst.provider, region=inst.region, tags=inst.tags or {}, explicit_geo=None,
                              default_lat=st.DEFAULT_GEO_LAT, default_lon=st.DEFAULT_GEO_LON,
                              default_label=st.DEFAULT_GEO_LABEL)
            new = (geo.lat, geo.lon, geo.label, geo.source) if geo else (None, None, None, None)
            if new != (inst.geo_lat, inst.geo_lon, inst.geo_label, inst.geo_source):
                inst.geo_lat, inst.geo_lon, inst.geo_label, inst.geo_source = new
                changed += 1
        state = await s.get(SystemState, STATE_KEY)
        if state is None:
            s.add(SystemState(name=STATE_KEY, value=version, updated_at=utcnow()))
        else:
            state.value, state.updated_at = version, utcnow()
    if changed:
        log.info("geo_recomputed", instances=changed)
    return changed


async def startup(rt: Runtime) -> None:
    await recompute_geo_if_table_changed(rt)
