"""Package inventory parsers and the lockfile walk."""

from __future__ import annotations

import json
from pathlib import Path

from sindri_console.agent.inventory import (
    find_lockfiles,
    os_ecosystem,
    parse_apk,
    parse_dpkg,
    parse_lockfile,
    parse_rpm,
    read_lockfiles,
)


def test_parse_dpkg():
    text = "libssl3\t3.0.15-1~deb12u1\tamd64\topenssl\t3.0.15-1~deb12u1\nbroken line\n"
    [item] = parse_dpkg(text, "Debian", "12")
    assert item["name"] == "libssl3" and item["sourceName"] == "openssl"
    assert item["ecosystem"] == "Debian" and item["ecosystemRelease"] == "12" and item["arch"] == "amd64"


def test_parse_rpm():
    text = "bash\t5.1.8-9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm\tGPLv3+\ngpg-pubkey\t1-2\t(none)\t(none)\tpubkey\n"
    items = parse_rpm(text, "Rocky Linux", "9.4")
    assert items[0]["sourceName"] == "bash" and items[0]["license"] == "GPLv3+" and items[0]["version"] == "5.1.8-9.el9"
    assert items[1]["sourceName"] is None


def test_parse_apk():
    items = parse_apk("musl-1.2.4-r2 - the musl c library\nca-certificates-bundle-20240226-r0 - certs\n", "3.19")
    assert [(i["name"], i["version"]) for i in items] == [("musl", "1.2.4-r2"), ("ca-certificates-bundle", "20240226-r0")]


def test_os_ecosystem():
    assert os_ecosystem({"ID": "ubuntu"}) == "Ubuntu"
    assert os_ecosystem({"ID": "opensuse-leap"}) == "openSUSE"
    assert os_ecosystem({"ID": "arch"}) is None


def test_lockfiles(tmp_path: Path):
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "app", "version": "1.0.0"},
            "node_modules/left-pad": {"version": "1.3.0", "license": "WTFPL"},
            "node_modules/a/node_modules/@scope/b": {"version": "2.0.0"},
        },
    }
    project = tmp_path / "code" / "app"
    project.mkdir(parents=True)
    (project / "package-lock.json").write_text(json.dumps(lock))
    hidden = tmp_path / "code" / "app" / "node_modules" / "x"
    hidden.mkdir(parents=True)
    (hidden / "package-lock.json").write_text(json.dumps(lock))
    assert find_lockfiles((str(tmp_path),)) == [str(project / "package-lock.json")]
    items = read_lockfiles((str(tmp_path),))
    assert [(i["name"], i["version"]) for i in items] == [("left-pad", "1.3.0"), ("@scope/b", "2.0.0")]
    assert items[0]["license"] == "WTFPL" and items[0]["locations"] == [str(project / "package-lock.json")]
    assert parse_lockfile({"lockfileVersion": 1}, "x") == []
