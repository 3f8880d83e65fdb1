from sqlalchemy import update

from sindri_console.domains.instances.hooks import STATE_KEY, recompute_geo_if_table_changed
from sindri_console.models.instance import Instance
from sindri_console.models.lease import SystemState


async def test_geo_is_recomputed_when_the_region_table_changes(console, admin):
    inst = await console.register(admin, "geo-recompute", region="sea")
    async with console.rt.db.write() as s:
        await s.execute(update(Instance).where(Instance.id == inst["id"]).values(geo_lat=1.0, geo_lon=2.0))
        await s.execute(update(SystemState).where(SystemState.name == STATE_KEY).values(value="older-table"))
    assert await recompute_geo_if_table_changed(console.rt) == 1
    r = await console.client.get(f"/api/v1/instances/{inst['id']}", headers=console.auth(admin))
    assert r.json()["geo"]["lat"] == 47.45
    assert await recompute_geo_if_table_changed(console.rt) == 0
