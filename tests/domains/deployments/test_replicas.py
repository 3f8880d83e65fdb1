"""Two replicas share the queue: every deployment runs exactly once (claims, 20-ops §7.7)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from tests.fakes.fake_sindri import FakeSindri

from sindri_console.app import create_app
from sindri_console.domains.deployments.runner import runner_of
from sindri_console.domains.version.service import cli_of
from sindri_console.models.deployments import Deployment


def yaml_doc(name: str) -> str:
    return f'version: "3.0"\nname: {name}\ndeployment:\n  provider: docker\nextensions:\n  active: [git]\n'


async def test_two_replicas_never_run_one_deployment_twice(console: Any, fake: FakeSindri, make_settings: Any,
                                                           settings_overrides: dict[str, Any]) -> None:
    fake.control(sleep=0.2)
    _, key = await console.user("VIEWER")
    for i in range(8):
        r = await console.client.post("/api/v1/deployments", json={"yamlConfig": yaml_doc(f"rep-{i}")},
                                      headers=console.auth(key))
        assert r.status_code == 202, r.text
    second = create_app(make_settings(**settings_overrides))
    async with second.router.lifespan_context(second):
        rt_a, rt_b = console.rt, second.state.runtime
        assert rt_a.replica_id != rt_b.replica_id
        await asyncio.gather(cli_of(rt_a).resolve(), cli_of(rt_b).resolve())
        runners = [runner_of(rt_a), runner_of(rt_b)]
        for _ in range(40):
            await asyncio.gather(*(r.tick() for r in runners))
            async with rt_a.db.read() as s:
                pending = await s.scalar(select(Deployment.id).where(
                    Deployment.status.in_(("PENDING", "IN_PROGRESS"))).limit(1))
            if pending is None:
                break
            await asyncio.sleep(0.1)
        await asyncio.gather(*(r.drain() for r in runners))
    async with console.rt.db.read() as s:
        rows = list(await s.execute(select(Deployment.id, Deployment.status, Deployment.claimed_by)))
    assert {status for _, status, _ in rows} == {"SUCCEEDED"}
    assert {claimed for _, _, claimed in rows} == {rt_a.replica_id, rt_b.replica_id}
    runs = fake.runs()
    assert len(runs) == 8
    assert sorted(run.cwd.rsplit("/", 1)[1] for run in runs) == sorted(d for d, _, _ in rows)
