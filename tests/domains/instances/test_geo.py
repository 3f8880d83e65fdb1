"""Geo resolution (10-core §5.6), the region coordinates table and pin rounding (10-core §7.2)."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from importlib import resources
from types import SimpleNamespace

import pytest

from sindri_console.domains.instances.geo import (
    DEFAULT_LOCATION_LABEL,
    GENERIC_REGIONS,
    PROVIDER_ALIASES,
    PROVIDERS,
    Geo,
    GeoSource,
    RegionTable,
    RegionTableError,
    coordinate_label,
    is_generic_region,
    normalise_provider,
    region_table,
    resolve_geo,
    round_half_away,
    table_version,
)

HEADER = "provider,region,lat,lon,label,aliasOf\n"


def _csv_bytes() -> bytes:
    return (resources.files("sindri_console") / "data" / "region_coordinates.csv").read_bytes()


def _csv_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_csv_bytes().decode("utf-8"))))


def _resolve(**overrides: object) -> Geo | None:
    arguments: dict[str, object] = {
        "provider": None,
        "region": None,
        "tags": None,
        "explicit_geo": None,
        "default_lat": None,
        "default_lon": None,
        "default_label": None,
    }
    arguments.update(overrides)
    return resolve_geo(**arguments)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Providers


def test_providers_are_the_canonical_list() -> None:
    assert PROVIDERS == (
        "fly",
        "docker",
        "devpod",
        "e2b",
        "kubernetes",
        "runpod",
        "northflank",
        "digitalocean",
        "gcp",
        "azure",
        "aws",
        "ssh",
    )
    assert set(PROVIDER_ALIASES.values()) <= set(PROVIDERS)
    assert not set(PROVIDER_ALIASES) & set(PROVIDERS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_canonical_providers_pass_through_in_any_case(provider: str) -> None:
    assert normalise_provider(provider) == provider
    assert normalise_provider(f"  {provider.upper()} ") == provider


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("k8s", "kubernetes"),
        ("KUBE", "kubernetes"),
        ("do", "digitalocean"),
        ("gce", "gcp"),
        ("Google", "gcp"),
        ("gcloud", "gcp"),
        ("ec2", "aws"),
        ("Amazon", "aws"),
        ("fly.io", "fly"),
        ("FlyIO", "fly"),
        ("az", "azure"),
        ("docker-compose", "docker"),
        (" Docker-Compose ", "docker"),
    ],
)
def test_provider_aliases(sent: str, stored: str) -> None:
    assert normalise_provider(sent) == stored


@pytest.mark.parametrize("value", ["heroku", "", "   ", "fly io", "aws2", "*"])
def test_unknown_provider_is_none(value: str) -> None:
    assert normalise_provider(value) is None


# --------------------------------------------------------------------------------------------------
# Region table: anchors, aliases, case


@pytest.mark.parametrize(
    ("provider", "region", "lat", "lon", "label"),
    [
        ("fly", "sea", 47.45, -122.30, "Seattle"),
        ("fly", "iad", 38.94, -77.46, "Ashburn, VA"),
        ("fly", "fra", 50.11, 8.68, "Frankfurt"),
        ("aws", "us-east-1", 38.13, -78.45, "US East (N. Virginia)"),
    ],
)
def test_anchors(provider: str, region: str, lat: float, lon: float, label: str) -> None:
    geo = _resolve(provider=provider, region=region)
    assert geo == Geo(lat, lon, label, GeoSource.REGION_TABLE)


def test_anchor_rows_in_file() -> None:
    rows = {(row["provider"], row["region"]): row for row in _csv_rows()}
    for key, lat, lon, label in [
        (("*", "sea"), "47.45", "-122.30", "Seattle"),
        (("*", "iad"), "38.94", "-77.46", "Ashburn, VA"),
        (("*", "fra"), "50.11", "8.68", "Frankfurt"),
        (("aws", "us-east-1"), "38.13", "-78.45", "US East (N. Virginia)"),
    ]:
        row = rows[key]
        assert (row["lat"], row["lon"], row["label"], row["aliasOf"]) == (lat, lon, label, "")


def test_fly_sea_wire_shape() -> None:
    geo = _resolve(provider="fly", region="sea")
    assert geo is not None
    assert geo.as_dict() == {"lat": 47.45, "lon": -122.3, "label": "Seattle", "source": "REGION_TABLE"}


def test_iata_rows_apply_to_any_provider() -> None:
    for provider in ("fly", "kubernetes", "docker", "heroku", None):
        geo = _resolve(provider=provider, region="fra")
        assert geo == Geo(50.11, 8.68, "Frankfurt", GeoSource.REGION_TABLE)


def test_provider_rows_do_not_leak_to_other_providers() -> None:
    # AWS region ids are AWS rows, not `*` rows.
    assert _resolve(provider="kubernetes", region="us-east-1") is None
    assert _resolve(provider=None, region="us-east-1") is None
    assert _resolve(provider="gcp", region="eastus") is None


def test_lookup_is_case_insensitive_and_applies_provider_aliases() -> None:
    table = region_table()
    expected = table.lookup("aws", "us-east-1")
    assert expected is not None
    for provider, region in [("AWS", "US-EAST-1"), (" ec2 ", " Us-East-1 "), ("amazon", "us-east-1")]:
        assert table.lookup(provider, region) == expected
    assert table.lookup("fly", "SEA") == table.lookup("fly", "sea")
    runpod = table.lookup("runpod", "us-ga-1")
    assert runpod is not None and runpod.region == "US-GA-1"
    assert table.lookup("K8S", "IAD") == table.lookup(None, "iad")


def test_provider_row_wins_over_any_provider_row() -> None:
    table = RegionTable.parse(HEADER + "*,sea,47.45,-122.30,Seattle,\nfly,sea,1.00,2.00,Fly Seattle,\n")
    assert table.lookup("fly", "sea").label == "Fly Seattle"  # type: ignore[union-attr]
    assert table.lookup("flyio", "SEA").label == "Fly Seattle"  # type: ignore[union-attr]
    assert table.lookup("aws", "sea").label == "Seattle"  # type: ignore[union-attr]
    geo = _resolve(provider="fly", region="sea", table=table)
    assert geo == Geo(1.0, 2.0, "Fly Seattle", GeoSource.REGION_TABLE)


@pytest.mark.parametrize("region", ["nyc1", "NYC2", "nyc3", "do-nyc"])
def test_digitalocean_new_york_aliases(region: str) -> None:
    geo = _resolve(provider="digitalocean", region=region)
    assert geo == Geo(40.71, -74.01, "New York", GeoSource.REGION_TABLE)
    assert _resolve(provider="do", region=region) == geo


def test_alias_rows_resolve_to_their_target() -> None:
    table = region_table()
    nyc1 = table.lookup("digitalocean", "nyc1")
    assert nyc1 is not None and nyc1.alias_of == "digitalocean:do-nyc"
    for provider, alias, target in [
        ("digitalocean", "sfo3", "do-sfo"),
        ("digitalocean", "ams3", "do-ams"),
        ("azure", "us-east-1", "eastus"),
        ("azure", "eu-west-1", "westeurope"),
        ("northflank", "eu-central-1", "europe-west-frankfurt"),
        ("northflank", "ap-southeast-1", "asia-southeast"),
    ]:
        entry, target_entry = table.lookup(provider, alias), table.lookup(provider, target)
        assert entry is not None and target_entry is not None
        assert (entry.lat, entry.lon, entry.label) == (target_entry.lat, target_entry.lon, target_entry.label)
        assert entry.alias_of == f"{provider}:{target_entry.region}"


def test_cross_provider_alias_and_label_override() -> None:
    e2b = _resolve(provider="e2b", region="us-east-1")
    assert e2b == Geo(38.13, -78.45, "US East (N. Virginia)", GeoSource.REGION_TABLE)
    runpod = region_table().lookup("runpod", "us-east-1")
    georgia = region_table().lookup("runpod", "US-GA-1")
    assert runpod is not None and georgia is not None
    assert (runpod.lat, runpod.lon, runpod.label) == (georgia.lat, georgia.lon, "US East")


# Region ids that 30-admin §1.2 lists (its generic docker/kubernetes ids excepted) must all be located.
ADMIN_REGION_IDS: dict[str, list[str]] = {
    "fly": "ams arn bom cdg dfw ewr fra gru iad jnb lax lhr nrt ord sin sjc syd yyz".split(),
    "digitalocean": "nyc1 nyc3 ams3 sfo2 sfo3 fra1 lon1 sgp1 tor1 blr1 syd1".split(),
    "e2b": ["us-east-1", "eu-west-1"],
    "runpod": ["us-east-1", "us-west-2", "eu-central-1"],
    "northflank": ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"],
    "aws": (
        "us-east-1 us-east-2 us-west-1 us-west-2 eu-west-1 eu-west-2 eu-central-1 ap-southeast-1 "
        "ap-northeast-1 sa-east-1"
    ).split(),
    "gcp": (
        "us-central1 us-east1 us-west1 europe-west1 europe-west4 asia-east1 asia-southeast1 "
        "southamerica-east1"
    ).split(),
    "azure": (
        "eastus eastus2 westus westus2 westeurope uksouth germanywestcentral southeastasia japaneast "
        "brazilsouth us-east-1 us-east-2 us-west-1 us-west-2 eu-west-1 eu-west-2 eu-central-1 "
        "ap-southeast-1 ap-northeast-1 sa-east-1"
    ).split(),
}


@pytest.mark.parametrize(
    ("provider", "region"),
    [(provider, region) for provider, regions in ADMIN_REGION_IDS.items() for region in regions],
)
def test_admin_region_ids_are_located(provider: str, region: str) -> None:
    geo = _resolve(provider=provider, region=region)
    assert geo is not None and geo.source is GeoSource.REGION_TABLE


def test_azure_legacy_alias_lands_on_the_mapped_region() -> None:
    assert _resolve(provider="azure", region="eu-central-1") == _resolve(
        provider="azure", region="germanywestcentral"
    )


# --------------------------------------------------------------------------------------------------
# Region table file


def test_every_csv_row_parses() -> None:
    rows = _csv_rows()
    assert rows, "the table is empty"
    assert list(rows[0].keys()) == ["provider", "region", "lat", "lon", "label", "aliasOf"]
    two_decimals = re.compile(r"-?\d{1,3}\.\d{2}")
    seen: set[tuple[str, str]] = set()
    for row in rows:
        provider, region = row["provider"], row["region"]
        assert provider == "*" or provider in PROVIDERS, row
        assert region and region == region.strip(), row
        assert region.lower() not in GENERIC_REGIONS, row
        key = (provider, region.lower())
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        if row["aliasOf"]:
            assert row["lat"] == "" and row["lon"] == "", row
        else:
            assert two_decimals.fullmatch(row["lat"]) and two_decimals.fullmatch(row["lon"]), row
            assert -90 <= float(row["lat"]) <= 90, row
            assert -180 <= float(row["lon"]) <= 180, row
            assert row["label"].strip(), row
        # Every row, alias or not, is reachable through the parsed table.
        entry = region_table().lookup(None if provider == "*" else provider, region)
        assert entry is not None, row
        assert -90 <= entry.lat <= 90 and -180 <= entry.lon <= 180
    assert len(region_table()) == len(rows)


def test_table_holds_every_provider_family() -> None:
    counts: dict[str, int] = {}
    for row in _csv_rows():
        counts[row["provider"]] = counts.get(row["provider"], 0) + 1
    assert counts["*"] >= 30
    for provider in ("aws", "gcp", "azure", "digitalocean", "runpod", "northflank"):
        assert counts.get(provider, 0) >= 5, provider


FLY_CODES = (
    "ams arn atl bog bom bos cdg den dfw ewr eze fra gdl gig gru hkg iad jnb lax lhr mad mia nrt ord otp "
    "phx qro scl sea sin sjc syd waw yul yyz"
).split()


@pytest.mark.parametrize("code", FLY_CODES)
def test_fly_codes_are_any_provider_rows(code: str) -> None:
    entry = region_table().lookup(None, code)
    assert entry is not None and entry.provider == "*"


@pytest.mark.parametrize("region", sorted(GENERIC_REGIONS))
def test_no_entries_for_generic_names(region: str) -> None:
    for provider in (*PROVIDERS, None):
        assert region_table().lookup(provider, region) is None


def test_table_version_is_the_hash_of_the_file() -> None:
    version = table_version()
    assert version == hashlib.sha256(_csv_bytes()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", version)
    assert table_version() == version


def test_region_table_is_loaded_once() -> None:
    assert region_table() is region_table()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("provider,region,lat,lon,label\n*,sea,1.00,2.00,X\n", "header"),
        (HEADER + "*,sea,1.00,2.00,A,\n*,SEA,1.00,2.00,B,\n", "duplicate"),
        (HEADER + "*,xyz,90.01,2.00,X,\n", "out of range"),
        (HEADER + "*,xyz,1.00,-180.01,X,\n", "out of range"),
        (HEADER + "*,xyz,nan,1.00,X,\n", "out of range"),
        (HEADER + "*,xyz,1.00,,X,\n", "out of range"),
        (HEADER + "*,xyz,1.00,2.00,,\n", "empty label"),
        (HEADER + "aws,local,1.00,2.00,X,\n", "generic"),
        (HEADER + "heroku,xyz,1.00,2.00,X,\n", "unknown provider"),
        (HEADER + "*,,1.00,2.00,X,\n", "empty region"),
        (HEADER + "*,xyz,1.00,2.00,X\n", "columns"),
        (HEADER + "*,abc,1.00,2.00,X,\ndigitalocean,xyz,1.00,2.00,,abc\n", "no coordinates"),
        (HEADER + "digitalocean,xyz,,,,nowhere\n", "names no row"),
        (HEADER + "*,abc,1.00,2.00,X,\naws,b,,,,abc\naws,c,,,,b\n", "names no row"),
        (HEADER + "*,abc,1.00,2.00,X,\naws,b,,,,heroku:abc\n", "unknown provider"),
    ],
)
def test_malformed_tables_are_refused(body: str, message: str) -> None:
    with pytest.raises(RegionTableError, match=message):
        RegionTable.parse(body)


def test_alias_lookup_order_in_a_small_table() -> None:
    table = RegionTable.parse(
        HEADER
        + "*,abc,1.00,2.00,Any ABC,\n"
        + "aws,abc,3.00,4.00,AWS ABC,\n"
        + "aws,one,,,,abc\n"
        + "gcp,two,,,,abc\n"
        + "gcp,three,,,Three,aws:abc\n"
    )
    assert table.lookup("aws", "one").label == "AWS ABC"  # type: ignore[union-attr]
    assert table.lookup("gcp", "two").label == "Any ABC"  # type: ignore[union-attr]
    three = table.lookup("gcp", "three")
    assert three is not None and (three.lat, three.lon, three.label) == (3.0, 4.0, "Three")
    assert len(table) == 5


# --------------------------------------------------------------------------------------------------
# Resolution order


def test_explicit_geo_wins_over_tags_and_region() -> None:
    geo = _resolve(
        provider="docker",
        region="sea",
        tags={"geo_lat": "1.5", "geo_lon": "2.5"},
        explicit_geo={"lat": 10, "lon": 20, "label": "Lab"},
        default_lat=5.0,
        default_lon=6.0,
    )
    assert geo == Geo(10.0, 20.0, "Lab", GeoSource.AGENT)


def test_explicit_geo_without_label_gets_coordinate_label() -> None:
    assert _resolve(explicit_geo={"lat": 10, "lon": 20}) == Geo(10.0, 20.0, "10.00, 20.00", GeoSource.AGENT)
    blank = _resolve(explicit_geo={"lat": -33.8688, "lon": 151.2093, "label": "  "})
    assert blank == Geo(-33.8688, 151.2093, "-33.87, 151.21", GeoSource.AGENT)


def test_explicit_geo_keeps_its_precision_and_trims_label() -> None:
    geo = _resolve(explicit_geo={"lat": 1.23456, "lon": -7.891011, "label": " Rack 4 "})
    assert geo == Geo(1.23456, -7.891011, "Rack 4", GeoSource.AGENT)


def test_explicit_geo_as_object() -> None:
    geo = _resolve(explicit_geo=SimpleNamespace(lat=1.0, lon=2.0, label=None))
    assert geo == Geo(1.0, 2.0, "1.00, 2.00", GeoSource.AGENT)


@pytest.mark.parametrize(
    "explicit",
    [
        {"lat": 90.5, "lon": 0},
        {"lat": -91, "lon": 0},
        {"lat": 0, "lon": 180.01},
        {"lat": 0, "lon": -181},
        {"lat": 10},
        {"lon": 10},
        {"lat": None, "lon": 10},
        {"lat": True, "lon": 10},
        {"lat": float("nan"), "lon": 10},
        {"lat": float("inf"), "lon": 10},
        {"lat": [1], "lon": 10},
    ],
)
def test_unusable_explicit_geo_is_not_used(explicit: dict[str, object]) -> None:
    # It falls through to the next source: the tags here, the region table without tags.
    via_tags = _resolve(explicit_geo=explicit, tags={"geo_lat": "1.5", "geo_lon": "2.5"}, region="sea")
    assert via_tags == Geo(1.5, 2.5, "1.50, 2.50", GeoSource.TAGS)
    via_table = _resolve(explicit_geo=explicit, provider="fly", region="sea")
    assert via_table is not None and via_table.source is GeoSource.REGION_TABLE


def test_explicit_geo_at_the_limits_is_used() -> None:
    assert _resolve(explicit_geo={"lat": 90, "lon": -180}) == Geo(
        90.0, -180.0, "90.00, -180.00", GeoSource.AGENT
    )
    assert _resolve(explicit_geo={"lat": -90, "lon": 180}) == Geo(
        -90.0, 180.0, "-90.00, 180.00", GeoSource.AGENT
    )


def test_tags_geo() -> None:
    geo = _resolve(provider="docker", region="local", tags={"geo_lat": "1.5", "geo_lon": "2.5"})
    assert geo == Geo(1.5, 2.5, "1.50, 2.50", GeoSource.TAGS)
    labelled = _resolve(tags={"geo_lat": " -12.25 ", "geo_lon": "+130", "geo_label": "Darwin lab"})
    assert labelled == Geo(-12.25, 130.0, "Darwin lab", GeoSource.TAGS)
    blank_label = _resolve(tags={"geo_lat": "1e1", "geo_lon": "-.5", "geo_label": ""})
    assert blank_label == Geo(10.0, -0.5, "10.00, -0.50", GeoSource.TAGS)


def test_tags_win_over_region_and_default() -> None:
    geo = _resolve(
        provider="fly",
        region="sea",
        tags={"geo_lat": "3", "geo_lon": "4"},
        default_lat=5.0,
        default_lon=6.0,
    )
    assert geo == Geo(3.0, 4.0, "3.00, 4.00", GeoSource.TAGS)


@pytest.mark.parametrize(
    "tags",
    [
        {"geo_lat": "abc", "geo_lon": "2"},
        {"geo_lat": "1", "geo_lon": ""},
        {"geo_lat": "nan", "geo_lon": "2"},
        {"geo_lat": "1", "geo_lon": "inf"},
        {"geo_lat": "1", "geo_lon": "Infinity"},
        {"geo_lat": "1_0", "geo_lon": "2"},
        {"geo_lat": "0x10", "geo_lon": "2"},
        {"geo_lat": "95", "geo_lon": "2"},
        {"geo_lat": "1", "geo_lon": "-180.5"},
        {"geo_lat": "1"},
        {"geo_lon": "2"},
        {"geo_lat": "1,5", "geo_lon": "2"},
        {"GEO_LAT": "1", "GEO_LON": "2"},
        {"geo_label": "Somewhere"},
    ],
)
def test_invalid_tags_are_ignored(tags: dict[str, str]) -> None:
    assert _resolve(provider="fly", region="iad", tags=tags) == Geo(
        38.94, -77.46, "Ashburn, VA", GeoSource.REGION_TABLE
    )
    assert _resolve(region="local", tags=tags) is None


def test_numeric_tag_values_are_accepted() -> None:
    assert _resolve(tags={"geo_lat": 1.5, "geo_lon": 2}) == Geo(1.5, 2.0, "1.50, 2.00", GeoSource.TAGS)
    assert _resolve(tags={"geo_lat": True, "geo_lon": 2}) is None


def test_region_table_source() -> None:
    geo = _resolve(provider="gcp", region="europe-west4", default_lat=5.0, default_lon=6.0)
    assert geo == Geo(53.44, 6.83, "Eemshaven, Netherlands", GeoSource.REGION_TABLE)


def test_unknown_specific_region_is_unlocated_even_with_a_default() -> None:
    assert _resolve(provider="fly", region="mars", default_lat=5.0, default_lon=6.0) is None
    assert _resolve(provider="aws", region="us-gov-west-1") is None


@pytest.mark.parametrize("region", [None, "", "   ", "local", "LOCAL", "default", " Production ", "staging"])
def test_default_for_missing_or_generic_region(region: str | None) -> None:
    geo = _resolve(provider="kubernetes", region=region, default_lat=48.8566, default_lon=2.3522)
    assert geo == Geo(48.8566, 2.3522, DEFAULT_LOCATION_LABEL, GeoSource.DEFAULT)
    assert DEFAULT_LOCATION_LABEL == "Default location"
    labelled = _resolve(region=region, default_lat=0.0, default_lon=0.0, default_label="HQ")
    assert labelled == Geo(0.0, 0.0, "HQ", GeoSource.DEFAULT)
    blank_label = _resolve(region=region, default_lat=1.0, default_lon=1.0, default_label=" ")
    assert blank_label == Geo(1.0, 1.0, DEFAULT_LOCATION_LABEL, GeoSource.DEFAULT)


@pytest.mark.parametrize(
    ("default_lat", "default_lon"),
    [(None, None), (10.0, None), (None, 10.0), (91.0, 0.0), (0.0, 181.0), (float("nan"), 0.0)],
)
def test_no_default_means_no_geo(default_lat: float | None, default_lon: float | None) -> None:
    assert (
        _resolve(provider="docker", region="local", default_lat=default_lat, default_lon=default_lon) is None
    )
    assert _resolve(provider=None, region=None, default_lat=default_lat, default_lon=default_lon) is None


def test_nothing_at_all_is_none() -> None:
    assert _resolve() is None
    assert _resolve(provider="ssh", region="rack-7", tags={"env": "prod"}) is None


def test_region_table_is_skipped_for_generic_regions() -> None:
    table = RegionTable.parse(HEADER + "*,xyz,1.00,2.00,X,\n")
    assert _resolve(region="local", table=table) is None
    assert _resolve(region="xyz", table=table) == Geo(1.0, 2.0, "X", GeoSource.REGION_TABLE)


@pytest.mark.parametrize(
    ("region", "generic"),
    [(None, True), ("", True), (" local ", True), ("Staging", True), ("sea", False), ("localhost", False)],
)
def test_is_generic_region(region: str | None, generic: bool) -> None:
    assert is_generic_region(region) is generic


# --------------------------------------------------------------------------------------------------
# Rounding


@pytest.mark.parametrize(
    ("value", "ndigits", "expected"),
    [
        (1.005, 2, 1.01),
        (-1.005, 2, -1.01),
        (2.675, 2, 2.68),
        (-2.675, 2, -2.68),
        (0.125, 2, 0.13),
        (-0.125, 2, -0.13),
        (47.445, 2, 47.45),
        (-122.305, 2, -122.31),
        (1.004, 2, 1.0),
        (1.0049999, 2, 1.0),
        (0.5, 0, 1.0),
        (-0.5, 0, -1.0),
        (2.5, 0, 3.0),
        (-2.5, 0, -3.0),
        (0.05, 1, 0.1),
        (-0.05, 1, -0.1),
        (125, -1, 130.0),
        (-125, -1, -130.0),
        (7, 2, 7.0),
        (1e20, 2, 1e20),
    ],
)
def test_round_half_away(value: float, ndigits: int, expected: float) -> None:
    assert round_half_away(value, ndigits) == expected


def test_round_half_away_defaults_to_two_decimals_and_has_no_negative_zero() -> None:
    assert round_half_away(3.14159) == 3.14
    zero = round_half_away(-0.001)
    assert zero == 0.0 and math.copysign(1.0, zero) == 1.0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_round_half_away_refuses_non_finite(value: float) -> None:
    with pytest.raises(ValueError):
        round_half_away(value)


def test_coordinate_label_rounds_half_away() -> None:
    assert coordinate_label(1.005, -1.005) == "1.01, -1.01"
    assert coordinate_label(-0.001, 0) == "0.00, 0.00"
    assert coordinate_label(47.45, -122.3) == "47.45, -122.30"
