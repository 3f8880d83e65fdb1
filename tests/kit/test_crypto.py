"""AES-256-GCM envelopes (kit/crypto.py)."""

from __future__ import annotations

import base64
import os

import pytest

from sindri_console.kit.crypto import CryptoError, MissingKeyError, decrypt, encrypt, parse_key

HEX_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def test_round_trip_with_hex_and_base64_keys() -> None:
    raw = os.urandom(32)
    for key in (raw.hex(), base64.b64encode(raw).decode(), raw):
        env = encrypt(b"secret value \x00\xff", key)
        assert env.startswith("v1.")
        assert b"secret" not in env.encode()
        assert decrypt(env, raw) == b"secret value \x00\xff"


def test_nonce_is_fresh_per_message() -> None:
    assert encrypt(b"same", HEX_KEY) != encrypt(b"same", HEX_KEY)


def test_wrong_key_tamper_and_associated_data_fail() -> None:
    env = encrypt(b"payload", HEX_KEY, associated_data=b"row-1")
    assert decrypt(env, HEX_KEY, associated_data=b"row-1") == b"payload"
    with pytest.raises(CryptoError):
        decrypt(env, os.urandom(32))
    with pytest.raises(CryptoError):
        decrypt(env, HEX_KEY, associated_data=b"row-2")
    head, nonce, body = env.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(CryptoError):
        decrypt(f"{head}.{nonce}.{flipped}", HEX_KEY, associated_data=b"row-1")
    for bad in ("", "v1", "v2.a.b", "v1.!!.??", "v1.AAAA.AAAA"):
        with pytest.raises(CryptoError):
            decrypt(bad, HEX_KEY)


def test_key_parsing() -> None:
    assert parse_key(HEX_KEY) == bytes.fromhex(HEX_KEY)
    for missing in (None, "", "   "):
        with pytest.raises(MissingKeyError) as err:
            parse_key(missing)
        assert "SECRET_VAULT_KEY" in str(err.value)
    for bad in ("abc", HEX_KEY[:-2], base64.b64encode(b"short").decode(), b"short"):
        with pytest.raises(CryptoError):
            parse_key(bad)
