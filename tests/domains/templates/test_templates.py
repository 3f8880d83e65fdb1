"""Deployment templates (20-ops §8): listing and filters, creation rules, lookup, deletion, seeding."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from sindri_console.app import create_app
from sindri_console.domains.templates.service import seed_official_templates
from sindri_console.models.audit import AuditLog
from sindri_console.models.deployments import DeploymentTemplate, TemplateSeedMark

OFFICIAL_IDS = {"tmpl_python_ml", "tmpl_fullstack_ts", "tmpl_rust_systems", "tmpl_k8s_infra"}

VALID_YAML = """version: "3.0"
name: my-stack
deployment:
  provider: docker
extensions:
  active: [git, zsh]
"""


def body(**overrides: Any) -> dict[str, Any]:
    data = {"name": "My Stack", "slug": "my-stack", "category": "Language", "description": "A test stack.",
            "yamlContent": VALID_YAML}
    data.update(overrides)
    return data


async def test_official_templates_are_seeded_at_start(console: Any, admin: str) -> None:
    r = await console.client.get("/api/v1/templates", headers=console.auth(admin))
    assert r.status_code == 200, r.text
    page = r.json()
    ids = {t["id"] for t in page["data"]}
    assert ids == OFFICIAL_IDS
    assert page["pagination"] == {"page": 1, "limit": 20, "total": 4, "totalPages": 1}
    ml = next(t for t in page["data"] if t["id"] == "tmpl_python_ml")
    assert ml["slug"] == "python-ml" and ml["isOfficial"] is True and ml["createdBy"] is None
    assert ml["provider"] == "fly" and ml["category"] == "ai"
    assert ml["providerRecommendations"] == ["e2b", "fly", "docker"]
    assert ml["extensions"] == ["python3", "pytorch", "jupyter", "claude-code", "git"]
    assert ml["validation"] == {"valid": True, "errors": []}


async def test_seeding_is_idempotent_across_starts_and_respects_deletion(console: Any, admin: str,
                                                                          make_settings: Any) -> None:
    # a second replica starting against the same database inserts nothing new
    again = await seed_official_templates(console.rt)
    assert again == {"inserted": 0, "updated": 0, "unchanged": 4}
    second = create_app(make_settings())
    async with second.router.lifespan_context(second):
        pass
    async with console.rt.db.read() as s:
        assert await s.scalar(select(func.count()).select_from(DeploymentTemplate)) == 4
        assert await s.scalar(select(func.count()).select_from(TemplateSeedMark)) == 4
    # a deleted official template is never re-created
    r = await console.client.delete("/api/v1/templates/tmpl_rust_systems", headers=console.auth(admin))
    assert r.status_code == 200, r.text
    assert r.json() == {"message": "Template deleted", "id": "tmpl_rust_systems", "slug": "rust-systems"}
    await seed_official_templates(console.rt)
    r = await console.client.get("/api/v1/templates/rust-systems", headers=console.auth(admin))
    assert r.status_code == 404
    assert r.json()["message"] == "Template 'rust-systems' not found"


async def test_higher_shipped_revision_updates_an_existing_official_template(console: Any) -> None:
    async with console.rt.db.write() as s:
        mark = await s.get(TemplateSeedMark, "python-ml")
        mark.revision = 0
        template = await s.get(DeploymentTemplate, "tmpl_python_ml")
        template.description = "edited locally"
    counts = await seed_official_templates(console.rt)
    assert counts["updated"] == 1
    async with console.rt.db.read() as s:
        template = await s.get(DeploymentTemplate, "tmpl_python_ml")
        assert template.description.startswith("Python 3 with PyTorch")
        assert (await s.get(TemplateSeedMark, "python-ml")).revision == 1


async def test_create_and_fetch_by_id_and_slug(console: Any) -> None:
    uid, key = await console.user("OPERATOR")
    r = await console.client.post("/api/v1/templates", json=body(), headers=console.auth(key))
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["location"] == f"/api/v1/templates/{created['id']}"
    assert created["category"] == "language"
    assert created["provider"] == "docker"
    assert created["providerRecommendations"] == ["docker"]
    assert created["extensions"] == ["git", "zsh"]
    assert created["isOfficial"] is False and created["createdBy"] == uid
    assert created["validation"] == {"valid": True, "errors": []}
    for ref in (created["id"], "my-stack"):
        got = await console.client.get(f"/api/v1/templates/{ref}", headers=console.auth(key))
        assert got.status_code == 200 and got.json() == created
    async with console.rt.db.read() as s:
        entry = await s.scalar(select(AuditLog).where(AuditLog.resource == "deployment_template"))
    assert entry.action == "CREATE" and entry.resource_id == created["id"] and entry.user_id == uid


async def test_snake_case_body_and_explicit_lists(console: Any) -> None:
    _, key = await console.user("OPERATOR")
    data = {"name": "S", "slug": "snake", "category": "x", "description": "d", "yaml_content": VALID_YAML,
            "provider_recommendations": ["docker-compose", "K8S"], "extensions": ["python3@3.12", "git"]}
    r = await console.client.post("/api/v1/templates", json=data, headers=console.auth(key))
    assert r.status_code == 201, r.text
    assert r.json()["providerRecommendations"] == ["docker", "kubernetes"]
    assert r.json()["extensions"] == ["python3@3.12", "git"]


async def test_invalid_schema_is_stored_with_its_errors(console: Any) -> None:
    _, key = await console.user("OPERATOR")
    legacy = "name: Legacy\ndeployment:\n  provider: fly\nextensions: [git, zsh]\n"
    r = await console.client.post("/api/v1/templates", json=body(slug="legacy", yamlContent=legacy),
                                  headers=console.auth(key))
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["validation"]["valid"] is False
    fields = {e["field"] for e in t["validation"]["errors"]}
    assert {"version", "name", "extensions"} <= fields
    assert t["extensions"] == ["git", "zsh"]  # items of a legacy list
    assert t["provider"] == "fly"


async def test_slug_rules_and_conflict(console: Any) -> None:
    _, key = await console.user("OPERATOR")
    for slug in ("Bad-Slug", "-x", "x-", "a_b", "", "0190f0a2-1c2b-7d3e-8f40-123456789abc",
                 "01ARZ3NDEKTSV4RRFFQ69G5FAV", "a" * 129):
        r = await console.client.post("/api/v1/templates", json=body(slug=slug), headers=console.auth(key))
        assert r.status_code == 422, (slug, r.text)
        assert r.json()["details"][0]["field"] == "slug"
    r = await console.client.post("/api/v1/templates", json=body(slug="python-ml"), headers=console.auth(key))
    assert r.status_code == 409
    assert r.json()["message"] == "Template with slug 'python-ml' already exists"


async def test_yaml_that_does_not_load_is_refused_with_its_field(console: Any) -> None:
    _, key = await console.user("OPERATOR")
    for text, needle in (("- a\n- b\n", "top level"), ("a: [1,\n", "line"), ("a: &x 1\nb: *x\n", "nchor")):
        r = await console.client.post("/api/v1/templates", json=body(yamlContent=text), headers=console.auth(key))
        assert r.status_code == 422, r.text
        detail = r.json()["details"][0]
        assert detail["field"] == "yamlContent" and needle in detail["message"]


async def test_reserved_secret_names_are_refused(console: Any) -> None:
    _, key = await console.user("OPERATOR")
    text = VALID_YAML + "secrets:\n  - name: DATABASE_URL\n    source: env\n"
    r = await console.client.post("/api/v1/templates", json=body(yamlContent=text), headers=console.auth(key))
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "yamlContent.secrets[0].name"
    nested = VALID_YAML + "providers:\n  docker:\n    env:\n      sindri_console_api_key: x\n"
    r = await console.client.post("/api/v1/templates", json=body(yamlContent=nested), headers=console.auth(key))
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "yamlContent.providers.docker.env.sindri_console_api_key"


async def test_body_field_rules(console: Any) -> None:
    _, key = await console.user("OPERATOR")
    cases = [
        (body(providerRecommendations=["mars"]), "providerRecommendations[0]"),
        (body(providerRecommendations=["fly", "fly.io"]), "providerRecommendations[1]"),
        (body(extensions=["Not Valid"]), "extensions[0]"),
        (body(name=""), "name"),
        (body(category="c" * 65), "category"),
        (body(description="   "), "description"),
        ({k: v for k, v in body().items() if k != "yamlContent"}, "yamlContent"),
    ]
    for data, field in cases:
        r = await console.client.post("/api/v1/templates", json=data, headers=console.auth(key))
        assert r.status_code == 422, (field, r.text)
        assert field in {d["field"] for d in r.json()["details"]}, r.json()
    r = await console.client.post("/api/v1/templates", content=b"{nope", headers=console.auth(key))
    assert r.status_code == 400


async def test_is_official_needs_admin(console: Any, admin: str) -> None:
    _, operator = await console.user("OPERATOR")
    r = await console.client.post("/api/v1/templates", json=body(isOfficial=True), headers=console.auth(operator))
    assert r.status_code == 403
    assert r.json()["message"] == "Only an ADMIN can mark a template official"
    r = await console.client.post("/api/v1/templates", json=body(isOfficial=True), headers=console.auth(admin))
    assert r.status_code == 201 and r.json()["isOfficial"] is True


async def test_roles(console: Any) -> None:
    _, viewer = await console.user("VIEWER")
    _, operator = await console.user("OPERATOR")
    assert (await console.client.get("/api/v1/templates", headers=console.auth(viewer))).status_code == 200
    r = await console.client.post("/api/v1/templates", json=body(), headers=console.auth(viewer))
    assert r.status_code == 403
    r = await console.client.delete("/api/v1/templates/tmpl_python_ml", headers=console.auth(operator))
    assert r.status_code == 403
    assert (await console.client.get("/api/v1/templates")).status_code == 401


async def test_filters_and_order(console: Any) -> None:
    _, key = await console.user("OPERATOR")
    h = console.auth(key)
    k8s_yaml = VALID_YAML.replace("provider: docker", "provider: k8s")
    assert (await console.client.post("/api/v1/templates", json=body(slug="user-a", category="AI"),
                                      headers=h)).status_code == 201
    assert (await console.client.post("/api/v1/templates", json=body(
        slug="user-b", name="Quantum Thing", yamlContent=k8s_yaml, providerRecommendations=["devpod"]),
        headers=h)).status_code == 201

    async def slugs(query: str) -> list[str]:
        r = await console.client.get(f"/api/v1/templates?{query}", headers=h)
        assert r.status_code == 200, r.text
        return [t["slug"] for t in r.json()["data"]]

    everything = await slugs("limit=100")
    # officials first, then newest first
    assert everything[:4] == ["kubernetes-infra", "rust-systems", "fullstack-typescript", "python-ml"] or \
        set(everything[:4]) == {"kubernetes-infra", "rust-systems", "fullstack-typescript", "python-ml"}
    assert everything[4:] == ["user-b", "user-a"]
    assert set(await slugs("category=ai")) == {"python-ml", "user-a"}
    assert set(await slugs("category=AI")) == {"python-ml", "user-a"}
    # YAML provider or a recommendation; aliases normalised
    assert set(await slugs("provider=kubernetes")) == {"kubernetes-infra", "user-b"}
    assert set(await slugs("provider=k8s")) == {"kubernetes-infra", "user-b"}
    assert set(await slugs("provider=devpod")) == {"fullstack-typescript", "user-b"}
    assert set(await slugs("provider=docker-compose")) == {"python-ml", "fullstack-typescript", "rust-systems",
                                                           "user-a"}
    assert await slugs("search=quantum") == ["user-b"]
    assert set(await slugs("search=RUST")) == {"rust-systems"}
    assert set(await slugs("isOfficial=false")) == {"user-a", "user-b"}
    assert len(await slugs("isOfficial=true")) == 4
    r = await console.client.get("/api/v1/templates?isOfficial=yes", headers=h)
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "isOfficial"
    r = await console.client.get("/api/v1/templates?search=" + "x" * 201, headers=h)
    assert r.status_code == 422
    r = await console.client.get("/api/v1/templates?limit=2&page=3", headers=h)
    assert r.json()["pagination"] == {"page": 3, "limit": 2, "total": 6, "totalPages": 3}
    assert len(r.json()["data"]) == 2


async def test_delete_by_id_only_and_404s(console: Any, admin: str) -> None:
    h = console.auth(admin)
    r = await console.client.delete("/api/v1/templates/python-ml", headers=h)
    assert r.status_code == 404 and r.json()["message"] == "Template 'python-ml' not found"
    r = await console.client.get("/api/v1/templates/nope", headers=h)
    assert r.status_code == 404 and r.json()["message"] == "Template 'nope' not found"
    r = await console.client.get("/api/v1/templates/bad%20id", headers=h)
    assert r.status_code == 400
    r = await console.client.delete("/api/v1/templates/tmpl_python_ml", headers=h)
    assert r.status_code == 200
    async with console.rt.db.read() as s:
        entry = await s.scalar(select(AuditLog).where(AuditLog.action == "DELETE"))
    assert entry.resource == "deployment_template" and entry.resource_id == "tmpl_python_ml"


async def test_concurrent_seeding_by_several_replicas(console: Any, make_settings: Any) -> None:
    import asyncio

    from sqlalchemy import delete

    async with console.rt.db.write() as s:
        await s.execute(delete(TemplateSeedMark))
        await s.execute(delete(DeploymentTemplate))
    others = [create_app(make_settings()) for _ in range(2)]
    runtimes = [console.rt, *(app.state.runtime for app in others)]
    try:
        results = await asyncio.gather(*(seed_official_templates(rt) for rt in runtimes))
    finally:
        for rt in runtimes[1:]:
            await rt.db.dispose()
    assert sum(r["inserted"] for r in results) == 4
    async with console.rt.db.read() as s:
        ids = set(await s.scalars(select(DeploymentTemplate.id)))
        marks = {m.slug: m.revision for m in await s.scalars(select(TemplateSeedMark))}
    assert ids == OFFICIAL_IDS
    assert marks == {"python-ml": 1, "fullstack-typescript": 1, "rust-systems": 1, "kubernetes-infra": 1}


async def test_a_user_template_holding_an_official_slug_is_kept(console: Any) -> None:
    from sqlalchemy import delete

    _, key = await console.user("OPERATOR")
    async with console.rt.db.write() as s:
        await s.execute(delete(TemplateSeedMark).where(TemplateSeedMark.slug == "rust-systems"))
        await s.execute(delete(DeploymentTemplate).where(DeploymentTemplate.id == "tmpl_rust_systems"))
    r = await console.client.post("/api/v1/templates", json=body(slug="rust-systems"), headers=console.auth(key))
    assert r.status_code == 201
    await seed_official_templates(console.rt)
    got = (await console.client.get("/api/v1/templates/rust-systems", headers=console.auth(key))).json()
    assert got["id"] == r.json()["id"] and got["isOfficial"] is False


async def test_text_databases_refuse_is_refused_with_422(console: Any) -> None:
    _, key = await console.user("OPERATOR")
    h = console.auth(key)
    for field in ("name", "description", "category"):
        r = await console.client.post("/api/v1/templates", json=body(**{field: "bad\u0000text"}), headers=h)
        assert r.status_code == 422 and r.json()["details"][0]["field"] == field, r.text
    raw = (b'{"name": "x\\ud800", "slug": "s", "category": "c", "description": "d", "yamlContent": '
           b'"version: 3.0"}')
    r = await console.client.post("/api/v1/templates", content=raw, headers={**h, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "name"
    r = await console.client.get("/api/v1/templates?search=a%00b", headers=h)
    assert r.status_code == 400  # the gateway refuses NUL in a query
