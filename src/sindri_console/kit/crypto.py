"""The one encryption-at-rest helper: AES-256-GCM envelopes under `SECRET_VAULT_KEY`.

Envelope text: `v1.<base64url nonce>.<base64url ciphertext+tag>` (no padding). The version prefix
lets a later key rotation recognise old envelopes; a 96-bit random nonce per message.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENVELOPE_VERSION = "v1"
NONCE_BYTES = 12
KEY_BYTES = 32
MISSING_KEY_MESSAGE = (
    "Encryption at rest is not configured: set SECRET_VAULT_KEY to 32 random bytes "
    "(64 hex characters or base64) and restart the console"
)


class CryptoError(Exception):
    """A key that cannot be used, or an envelope that does not decrypt under it."""


class MissingKeyError(CryptoError):
    """SECRET_VAULT_KEY is not configured; the message says how to fix it."""

    def __init__(self) -> None:
        super().__init__(MISSING_KEY_MESSAGE)


def parse_key(raw: str | bytes | None) -> bytes:
    """32 key bytes from 64 hex characters or base64 text (or raw bytes); MissingKeyError when absent."""
    if raw is None or (isinstance(raw, str | bytes) and len(raw.strip()) == 0):
        raise MissingKeyError()
    if isinstance(raw, bytes):
        if len(raw) != KEY_BYTES:
            raise CryptoError("an AES-256 key must be 32 bytes")
        return raw
    text = raw.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise CryptoError("SECRET_VAULT_KEY must be 32 bytes as 64 hex characters or base64")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encrypt(plaintext: bytes, key: str | bytes | None, *, associated_data: bytes | None = None) -> str:
    """Seal `plaintext`; `associated_data` (e.g. the row id) binds the envelope to its owner."""
    aes = AESGCM(parse_key(key))
    nonce = os.urandom(NONCE_BYTES)
    sealed = aes.encrypt(nonce, plaintext, associated_data)
    return f"{ENVELOPE_VERSION}.{_b64(nonce)}.{_b64(sealed)}"


def decrypt(envelope: str, key: str | bytes | None, *, associated_data: bytes | None = None) -> bytes:
    """Open an envelope made by `encrypt`; CryptoError when it is malformed, tampered or under another key."""
    parts = envelope.split(".") if isinstance(envelope, str) else []
    if len(parts) != 3 or parts[0] != ENVELOPE_VERSION:
        raise CryptoError("not an encrypted envelope of this product")
    try:
        nonce, sealed = _unb64(parts[1]), _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise CryptoError("not an encrypted envelope of this product") from None
    if len(nonce) != NONCE_BYTES:
        raise CryptoError("not an encrypted envelope of this product")
    try:
        return AESGCM(parse_key(key)).decrypt(nonce, sealed, associated_data)
    except InvalidTag:
        raise CryptoError("the envelope does not decrypt under this key") from None
