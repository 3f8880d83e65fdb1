async def test_health_is_public(console):
    r = await console.client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["checks"]["database"]["status"] in ("ok", "slow")


async def test_register_and_list(console, admin):
    inst = await console.register(admin, "web-1")
    assert inst["status"] == "RUNNING"
    assert inst["geo"]["label"] == "Seattle"
    r = await console.client.get("/api/v1/instances", headers=console.auth(admin))
    assert r.status_code == 200, r.text
    assert r.json()["pagination"]["total"] == 1
