"""Wire shapes of the fleet overview (10-core §7.1, §7.2)."""

from __future__ import annotations

from sindri_console.kit.schema import OutModel


class ProviderCountOut(OutModel):
    provider: str
    count: int


class FleetStatsOut(OutModel):
    total: int
    by_status: dict[str, int]
    by_provider: list[ProviderCountOut]
    agents_connected: int
    active_sessions: int
    version_outdated: int
    updated_at: str


class GeoPinOut(OutModel):
    lat: float
    lon: float
    label: str
    region: str | None
    provider: str | None
    count: int
    by_status: dict[str, int]
    instance_ids: list[str]


class FleetGeoOut(OutModel):
    data: list[GeoPinOut]
    unlocated: int
    updated_at: str
