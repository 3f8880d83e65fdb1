"""SQL of deployment templates and their seed marks (20-ops §8)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, cast, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sindri_console.db.dialect import Dialect
from sindri_console.models.deployments import DeploymentTemplate, TemplateSeedMark


def list_statement(
    *,
    category: str | None,
    provider: str | None,
    search: str | None,
    is_official: bool | None,
    icontains: Callable[[Any, str], ColumnElement[bool]],
) -> Select[Any]:
    """Templates matching the §8.5 filters, ordered isOfficial desc, createdAt desc, id desc."""
    stmt = select(DeploymentTemplate)
    if category is not None:
        stmt = stmt.where(DeploymentTemplate.category == category.lower())
    if provider is not None:
        # Provider names are [a-z-] only (validated on write), so the quoted name is an exact element
        # match inside the JSON array text on both databases.
        in_recommendations = cast(DeploymentTemplate.provider_recommendations, String).like(f'%"{provider}"%')
        stmt = stmt.where(or_(DeploymentTemplate.provider == provider, in_recommendations))
    if search is not None:
        stmt = stmt.where(or_(
            icontains(DeploymentTemplate.name, search),
            icontains(DeploymentTemplate.slug, search),
            icontains(DeploymentTemplate.description, search),
        ))
    if is_official is not None:
        stmt = stmt.where(DeploymentTemplate.is_official.is_(is_official))
    return stmt.order_by(
        DeploymentTemplate.is_official.desc(), DeploymentTemplate.created_at.desc(), DeploymentTemplate.id.desc()
    )


async def by_id(session: AsyncSession, template_id: str) -> DeploymentTemplate | None:
    return await session.get(DeploymentTemplate, template_id)


async def by_id_or_slug(session: AsyncSession, value: str) -> DeploymentTemplate | None:
    """§8.2: the id first, then the slug."""
    found = await session.get(DeploymentTemplate, value)
    if found is None:
        found = await session.scalar(select(DeploymentTemplate).where(DeploymentTemplate.slug == value))
    return found


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    return await session.scalar(select(DeploymentTemplate.id).where(DeploymentTemplate.slug == slug)) is not None


async def delete_template(session: AsyncSession, template_id: str) -> None:
    await session.execute(delete(DeploymentTemplate).where(DeploymentTemplate.id == template_id))


async def seed_mark(session: AsyncSession, slug: str) -> TemplateSeedMark | None:
    return await session.get(TemplateSeedMark, slug)


async def insert_if_absent(session: AsyncSession, dialect: Dialect, values: dict[str, Any]) -> bool:
    """Insert a template unless its id or slug exists (another replica may be seeding too)."""
    stmt = dialect.insert(DeploymentTemplate.__table__).values(**values).on_conflict_do_nothing()
    result = await session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def write_mark(session: AsyncSession, dialect: Dialect, slug: str, revision: int, now: datetime) -> None:
    """Record `revision` for `slug`; never lowers a recorded revision."""
    table = TemplateSeedMark.__table__
    stmt = dialect.insert(table).values(slug=slug, revision=revision, seeded_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.slug],
        set_={"revision": revision, "seeded_at": now},
        where=table.c.revision < revision,
    )
    await session.execute(stmt)


async def update_official_content(session: AsyncSession, slug: str, values: dict[str, Any]) -> bool:
    """Replace the shipped fields of the official template that still holds `slug`."""
    result = await session.execute(
        update(DeploymentTemplate)
        .where(DeploymentTemplate.slug == slug, DeploymentTemplate.is_official.is_(True))
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
