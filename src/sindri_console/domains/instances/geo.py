"""Geo resolution of instances (10-core §5.6) and the region coordinates table.

The geo of an instance is computed when it registers (or when its region, provider, tags or geo
change) and stored with it. Resolution never makes an outbound call; it uses, in order:

1. the explicit ``geo`` of the registration body (``AGENT``);
2. the tags ``geo_lat`` / ``geo_lon`` (and ``geo_label``) (``TAGS``);
3. the region coordinates table shipped in ``sindri_console/data/region_coordinates.csv``
   (``REGION_TABLE``);
4. the configured default location, only for a missing or generic region (``DEFAULT``).

The table has the columns ``provider,region,lat,lon,label,aliasOf``. ``provider`` is a canonical
provider or ``*`` (any provider). A row with ``aliasOf`` has empty ``lat``/``lon`` and takes its
coordinates, and its label unless it has its own, from the row it names. ``aliasOf`` is a region id
looked up like a region of the alias row's provider (``nyc1`` -> ``do-nyc``), or ``provider:region``
to name a row of another provider (``e2b``'s ``us-east-1`` -> ``aws:us-east-1``). An alias must name a
row that is not itself an alias.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from importlib import resources

from sindri_console.kit.providers import PROVIDER_ALIASES, PROVIDERS, normalise_provider

__all__ = [
    "DEFAULT_LOCATION_LABEL",
    "GENERIC_REGIONS",
    "PROVIDERS",
    "PROVIDER_ALIASES",
    "Geo",
    "GeoSource",
    "RegionEntry",
    "RegionTable",
    "RegionTableError",
    "coordinate_label",
    "is_generic_region",
    "normalise_provider",
    "region_table",
    "resolve_geo",
    "round_half_away",
    "table_version",
]

# Canonical providers, in the order of 10-core §5.1.
# Region names that say nothing about a place (10-core §5.6); the table never holds them.
GENERIC_REGIONS: frozenset[str] = frozenset({"local", "default", "production", "staging"})

DEFAULT_LOCATION_LABEL = "Default location"

ANY_PROVIDER = "*"
TABLE_COLUMNS: tuple[str, ...] = ("provider", "region", "lat", "lon", "label", "aliasOf")

_PACKAGE = "sindri_console"
_TABLE_PATH: tuple[str, ...] = ("data", "region_coordinates.csv")

# A plain decimal number: no `nan`, `inf`, underscores or hex that float() would also accept.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def is_generic_region(region: str | None) -> bool:
    """True for a missing, blank or generic (`local`, `default`, `production`, `staging`) region."""
    if region is None:
        return True
    key = region.strip().lower()
    return key == "" or key in GENERIC_REGIONS


# ---------------------------------------------------------------------------------------------------
# Numbers


def round_half_away(x: float, ndigits: int = 2) -> float:
    """Round ``x`` to ``ndigits`` decimals, ties away from zero (1.005 -> 1.01, -1.005 -> -1.01).

    The float is read through its shortest decimal representation (``repr``), so the value a
    person wrote is the value that is rounded, and the rounding itself is decimal arithmetic.
    """
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"cannot round a non-finite number: {value!r}")
    exact = Decimal(repr(value))
    quantum = Decimal(1).scaleb(-ndigits)
    context = Context(prec=max(28, exact.adjusted() + ndigits + 2), rounding=ROUND_HALF_UP)
    rounded = exact.quantize(quantum, context=context)
    # Adding +0.0 turns a negative zero (e.g. from -0.001) into 0.0.
    return float(rounded) + 0.0


def _two_decimals(x: float) -> str:
    text = f"{Decimal(repr(round_half_away(x, 2))):.2f}"
    return "0.00" if text == "-0.00" else text


def coordinate_label(lat: float, lon: float) -> str:
    """The label used when a located instance has none: ``"<lat>, <lon>"`` with 2 decimals."""
    return f"{_two_decimals(lat)}, {_two_decimals(lon)}"


def _coordinate(value: object, limit: float) -> float | None:
    """``value`` as a finite number within ``[-limit, limit]``, else None.

    Numbers are accepted as ints, floats, Decimals or decimal strings (tags are strings).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _NUMBER_RE.fullmatch(text):
            return None
        number = float(text)
    else:
        return None
    if not math.isfinite(number) or not -limit <= number <= limit:
        return None
    return number + 0.0


def _latitude(value: object) -> float | None:
    return _coordinate(value, 90.0)


def _longitude(value: object) -> float | None:
    return _coordinate(value, 180.0)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped:
            return stripped
    return None


# ---------------------------------------------------------------------------------------------------
# Region coordinates table


class RegionTableError(ValueError):
    """The region coordinates file is malformed; the message names the line."""


@dataclass(frozen=True, slots=True)
class RegionEntry:
    """A resolved row of the table (aliases carry their target's coordinates)."""

    provider: str
    region: str
    lat: float
    lon: float
    label: str
    alias_of: str | None = None


@dataclass(frozen=True, slots=True)
class _Alias:
    line: int
    provider: str
    region: str
    label: str | None
    alias_of: str


class RegionTable:
    """Case-insensitive lookup of (provider, region) -> coordinates, with ``*`` as any provider."""

    def __init__(self, entries: Mapping[tuple[str, str], RegionEntry]) -> None:
        self._entries: dict[tuple[str, str], RegionEntry] = {
            (provider.lower(), region.lower()): entry for (provider, region), entry in entries.items()
        }

    @classmethod
    def parse(cls, text: str) -> RegionTable:
        """Parse and validate the CSV text of the table; raises RegionTableError on any bad row."""
        canonical, aliases = _parse_rows(text)
        entries = dict(canonical)
        for alias in aliases:
            target = _alias_target(alias, canonical)
            entries[(alias.provider, alias.region.lower())] = RegionEntry(
                provider=alias.provider,
                region=alias.region,
                lat=target.lat,
                lon=target.lon,
                label=alias.label or target.label,
                alias_of=f"{target.provider}:{target.region}",
            )
        return cls(entries)

    def lookup(self, provider: str | None, region: str | None) -> RegionEntry | None:
        """Row for (provider, region), else (``*``, region); provider aliases apply; any case."""
        if region is None:
            return None
        key = region.strip().lower()
        if not key:
            return None
        canonical = normalise_provider(provider) if provider is not None else None
        if canonical is not None:
            entry = self._entries.get((canonical, key))
            if entry is not None:
                return entry
        return self._entries.get((ANY_PROVIDER, key))

    def entries(self) -> Iterator[RegionEntry]:
        """Every row: rows with coordinates in file order, then alias rows (resolved) in file order."""
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def _parse_rows(text: str) -> tuple[dict[tuple[str, str], RegionEntry], list[_Alias]]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None or tuple(column.strip() for column in header) != TABLE_COLUMNS:
        raise RegionTableError(f"region table: header must be {','.join(TABLE_COLUMNS)}")
    canonical: dict[tuple[str, str], RegionEntry] = {}
    aliases: list[_Alias] = []
    seen: set[tuple[str, str]] = set()
    for record in reader:
        line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if len(record) != len(TABLE_COLUMNS):
            raise RegionTableError(f"region table line {line}: expected {len(TABLE_COLUMNS)} columns")
        provider_cell, region, lat_cell, lon_cell, label_cell, alias_of = (cell.strip() for cell in record)
        provider = provider_cell.lower()
        if provider != ANY_PROVIDER and provider not in PROVIDERS:
            raise RegionTableError(f"region table line {line}: unknown provider {provider_cell!r}")
        if not region:
            raise RegionTableError(f"region table line {line}: empty region")
        if region.lower() in GENERIC_REGIONS:
            raise RegionTableError(f"region table line {line}: generic region {region!r}")
        key = (provider, region.lower())
        if key in seen:
            raise RegionTableError(f"region table line {line}: duplicate ({provider}, {region})")
        seen.add(key)
        if alias_of:
            if lat_cell or lon_cell:
                raise RegionTableError(f"region table line {line}: an alias row has no coordinates")
            aliases.append(_Alias(line, provider, region, label_cell or None, alias_of))
            continue
        lat = _latitude(lat_cell)
        lon = _longitude(lon_cell)
        if lat is None or lon is None:
            raise RegionTableError(f"region table line {line}: lat/lon missing or out of range")
        if not label_cell:
            raise RegionTableError(f"region table line {line}: empty label")
        canonical[key] = RegionEntry(provider, region, lat, lon, label_cell)
    return canonical, aliases


def _alias_target(alias: _Alias, canonical: Mapping[tuple[str, str], RegionEntry]) -> RegionEntry:
    provider_part, separator, region_part = alias.alias_of.partition(":")
    if separator:
        target_provider = provider_part.strip().lower()
        if target_provider != ANY_PROVIDER and target_provider not in PROVIDERS:
            raise RegionTableError(
                f"region table line {alias.line}: alias names unknown provider {provider_part!r}"
            )
        target_region = region_part.strip().lower()
    else:
        target_provider = alias.provider
        target_region = provider_part.strip().lower()
    target = canonical.get((target_provider, target_region)) or canonical.get((ANY_PROVIDER, target_region))
    if target is None:
        raise RegionTableError(
            f"region table line {alias.line}: alias {alias.alias_of!r} names no row with coordinates"
        )
    return target


@functools.cache
def _table_bytes() -> bytes:
    resource = resources.files(_PACKAGE)
    for part in _TABLE_PATH:
        resource = resource / part
    return resource.read_bytes()


@functools.cache
def region_table() -> RegionTable:
    """The shipped region coordinates table, parsed once per process."""
    return RegionTable.parse(_table_bytes().decode("utf-8"))


def table_version() -> str:
    """SHA-256 (hex) of the shipped table file: a startup task stores it to notice a changed table."""
    return hashlib.sha256(_table_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Resolution


class GeoSource(StrEnum):
    AGENT = "AGENT"
    TAGS = "TAGS"
    REGION_TABLE = "REGION_TABLE"
    DEFAULT = "DEFAULT"


@dataclass(frozen=True, slots=True)
class Geo:
    lat: float
    lon: float
    label: str
    source: GeoSource

    def as_dict(self) -> dict[str, object]:
        """The wire shape ``{ lat, lon, label, source }`` of 10-core §5.1."""
        return {"lat": self.lat, "lon": self.lon, "label": self.label, "source": self.source.value}


def _field(container: object, name: str) -> object:
    if isinstance(container, Mapping):
        return container.get(name)
    return getattr(container, name, None)


def resolve_geo(
    *,
    provider: str | None = None,
    region: str | None = None,
    tags: Mapping[str, object] | None = None,
    explicit_geo: Mapping[str, object] | object | None = None,
    default_lat: float | None = None,
    default_lon: float | None = None,
    default_label: str | None = None,
    table: RegionTable | None = None,
) -> Geo | None:
    """Geo of an instance per 10-core §5.6, or None when nothing locates it.

    ``explicit_geo`` is the body's ``geo`` (a mapping, or an object with ``lat``/``lon``/``label``);
    it is used only when both coordinates are numbers in range. ``table`` defaults to the shipped
    table.
    """
    # 1. Explicit geo from the registration body.
    if explicit_geo is not None:
        lat = _latitude(_field(explicit_geo, "lat"))
        lon = _longitude(_field(explicit_geo, "lon"))
        if lat is not None and lon is not None:
            label = _text(_field(explicit_geo, "label")) or coordinate_label(lat, lon)
            return Geo(lat, lon, label, GeoSource.AGENT)

    # 2. Tags geo_lat / geo_lon (geo_label).
    if tags:
        lat = _latitude(tags.get("geo_lat"))
        lon = _longitude(tags.get("geo_lon"))
        if lat is not None and lon is not None:
            label = _text(tags.get("geo_label")) or coordinate_label(lat, lon)
            return Geo(lat, lon, label, GeoSource.TAGS)

    generic = is_generic_region(region)

    # 3. Region coordinates table: (provider, region), then (*, region).
    if not generic:
        entry = (table if table is not None else region_table()).lookup(provider, region)
        if entry is not None:
            return Geo(entry.lat, entry.lon, entry.label, GeoSource.REGION_TABLE)
        return None

    # 4. Configured default, only for a missing or generic region.
    lat = _latitude(default_lat)
    lon = _longitude(default_lon)
    if lat is not None and lon is not None:
        return Geo(lat, lon, _text(default_label) or DEFAULT_LOCATION_LABEL, GeoSource.DEFAULT)
    return None
