"""Fleet overview (10-core §7.1, §7.2): computed per request from grouped queries, scoped to the caller."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sindri_console.domains.fleet import repository as repo
from sindri_console.domains.instances.geo import round_half_away
from sindri_console.domains.instances.service import min_instance_version
from sindri_console.kit.auth import Principal
from sindri_console.kit.cli_runner import version_status
from sindri_console.kit.clock import to_iso, utcnow
from sindri_console.kit.scope import LIVE_STATUSES
from sindri_console.runtime import Runtime


async def fleet_stats(rt: Runtime, principal: Principal) -> dict[str, Any]:
    """§7.1: counts over live in-scope instances; `byStatus` is zero-filled and sums to `total`."""
    now = utcnow()
    min_version = min_instance_version(rt)
    async with rt.db.read() as s:
        statuses = await repo.count_by_status(s, principal)
        providers = await repo.count_by_provider(s, principal)
        versions = await repo.count_by_version(s, principal)
        connected = await repo.count_agents_connected(s, principal)
        sessions = await repo.count_open_terminal_sessions(s, principal, now)
    by_status = {status: statuses.get(status, 0) for status in LIVE_STATUSES}
    by_provider = sorted(((p, n) for p, n in providers.items() if p is not None), key=lambda pn: (-pn[1], pn[0]))
    outdated = sum(n for v, n in versions.items() if version_status(v, min_version) == "OUTDATED")
    return {
        "total": sum(by_status.values()),
        "byStatus": by_status,
        "byProvider": [{"provider": p, "count": n} for p, n in by_provider],
        "agentsConnected": connected,
        "activeSessions": sessions,
        "versionOutdated": outdated,
        "updatedAt": to_iso(now),
    }


def _most_frequent(counts: Counter[str]) -> str | None:
    """Most frequent key, ties broken alphabetically."""
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


@dataclass
class _Pin:
    lat: float
    lon: float
    count: int = 0
    regions: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    region_labels: dict[str, Counter[str]] = field(default_factory=dict)
    providers: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    newest: list[str] = field(default_factory=list)  # instance ids, newest first

    def to_wire(self) -> dict[str, Any]:
        region = _most_frequent(self.regions)
        label_counts = self.region_labels.get(region, Counter()) if region is not None else self.labels
        return {
            "lat": self.lat,
            "lon": self.lon,
            "label": _most_frequent(label_counts) or "",
            "region": region,
            "provider": _most_frequent(self.providers),
            "count": self.count,
            "byStatus": {st: n for st, n in sorted(self.statuses.items()) if n},
            "instanceIds": list(self.newest),
        }


def _key(lat: float, lon: float) -> tuple[float, float]:
    return round_half_away(lat, 2), round_half_away(lon, 2)


async def fleet_geo(rt: Runtime, principal: Principal) -> dict[str, Any]:
    """§7.2: pins of instances grouped by coordinates rounded to 2 decimals (half away from zero)."""
    now = utcnow()
    async with rt.db.read() as s:
        groups = await repo.located_groups(s, principal)
        unlocated = await repo.count_unlocated(s, principal)
        pins = _pins(groups)
        missing = sum(min(p.count, repo.PIN_INSTANCE_IDS) for p in pins.values())
        keys: dict[tuple[float, float], tuple[float, float]] = {}
        if missing:
            async with contextlib.aclosing(repo.located_newest_first(s, principal)) as rows:
                async for instance_id, lat, lon in rows:
                    key = keys.get((lat, lon)) or keys.setdefault((lat, lon), _key(lat, lon))
                    pin = pins.get(key)
                    if pin is None or len(pin.newest) >= repo.PIN_INSTANCE_IDS:
                        continue
                    pin.newest.append(instance_id)
                    missing -= 1
                    if missing == 0:
                        break
    data = sorted((p.to_wire() for p in pins.values()), key=lambda d: (-d["count"], d["label"]))
    return {"data": data, "unlocated": unlocated, "updatedAt": to_iso(now)}


def _pins(groups: list[Any]) -> dict[tuple[float, float], _Pin]:
    pins: dict[tuple[float, float], _Pin] = {}
    for lat, lon, region, provider, label, status, n in groups:
        key = _key(lat, lon)
        pin = pins.get(key) or pins.setdefault(key, _Pin(*key))
        pin.count += n
        pin.statuses[status] += n
        if provider is not None:
            pin.providers[provider] += n
        if label:
            pin.labels[label] += n
        if region is not None:
            pin.regions[region] += n
            if label:
                pin.region_labels.setdefault(region, Counter())[label] += n
    return pins
