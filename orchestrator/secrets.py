"""Secrets at rest: AES-256-GCM tokens for the Bybit api_secret, the Gate password and the Gate cookies.

Token format: ``v1.<key id>.<base64url(nonce || ciphertext+tag)>``
* v1      - format version, so the scheme can change without guessing.
* key id  - 8 hex chars of SHA-256(key): tells "wrong key" apart from "tampered" in error messages and
            helps key rotation.  It reveals nothing useful about a random 256-bit key.
* nonce   - 96 random bits per value (never reused with the same key in practice).
* the associated data binds a token to "<table>.<column>#<row id>", so a ciphertext copied onto another
  row (or column) fails authentication instead of silently decrypting.

The key comes from ITRADER_ENCRYPTION_KEY (32 bytes, base64 or base64url); `itrader keygen` makes one.
Neither the key nor any plaintext ever appears in an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

VERSION = "v1"
ENV_KEY = "ITRADER_ENCRYPTION_KEY"


class SecretsError(Exception):
    """Missing/invalid key, or a token that cannot be opened (wrong key, tampered, moved to another row)."""


def generate_key() -> str:
    """A fresh random key in the form ITRADER_ENCRYPTION_KEY expects."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def parse_key(value: str | None) -> bytes:
    if value is None or not value.strip():
        raise SecretsError(f"{ENV_KEY} is not set: it is needed to store or read account secrets "
                           "(create one with `itrader keygen` and keep it outside the database)")
    raw = value.strip()
    try:
        key = base64.b64decode(raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretsError(f"{ENV_KEY} is not valid base64 (expected 32 random bytes, see `itrader keygen`)"
                           ) from None
    if len(key) != 32:
        raise SecretsError(f"{ENV_KEY} must decode to 32 bytes, got {len(key)} (see `itrader keygen`)")
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def aad_for(table: str, column: str, row_id: int | str) -> str:
    if row_id is None or str(row_id) == "":
        raise SecretsError("a secret needs its row id (flush the row first)")
    return f"{table}.{column}#{row_id}"


class SecretBox:
    """Encrypts/decrypts column values with one key."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise SecretsError("the encryption key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)

    @classmethod
    def from_env(cls, value: str | None = None) -> SecretBox:
        return cls(parse_key(value if value is not None else os.environ.get(ENV_KEY)))

    def seal(self, plaintext: str, table: str, column: str, row_id: int | str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext.encode("utf-8"), aad_for(table, column, row_id).encode())
        return f"{VERSION}.{self.key_id}.{base64.urlsafe_b64encode(nonce + ct).decode().rstrip('=')}"

    def open(self, token: str, table: str, column: str, row_id: int | str) -> str:
        from cryptography.exceptions import InvalidTag

        where = aad_for(table, column, row_id)
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != VERSION:
            raise SecretsError(f"{where}: not a {VERSION} secret token")
        if parts[1] != self.key_id:
            raise SecretsError(f"{where}: encrypted with key {parts[1]}, but {ENV_KEY} is key {self.key_id} "
                               "(wrong or rotated key)")
        try:
            blob = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (binascii.Error, ValueError):
            raise SecretsError(f"{where}: corrupted secret token") from None
        if len(blob) < 12 + 16:
            raise SecretsError(f"{where}: corrupted secret token")
        try:
            return self._aead.decrypt(blob[:12], blob[12:], where.encode()).decode("utf-8")
        except InvalidTag:
            raise SecretsError(f"{where}: secret failed authentication (tampered, or copied from another "
                               "row/column)") from None
