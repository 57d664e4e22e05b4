"""Encryption at rest: AES-256-GCM with key ids, and HMAC blind indexes.

Keys come from ``NITROPROXY_DATA_KEY``: one or more comma-separated entries, each 32 bytes
in URL-safe base64 (``openssl rand -base64 32``). The first key encrypts; every listed key
decrypts. To rotate, put a new key first, run ``nitroproxy rotate-data-key``, then drop the
old one. Each ciphertext names its key id, so rows under either key stay readable meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENV_VAR = "NITROPROXY_DATA_KEY"
_VERSION = b"g1"
_NONCE = 12


class CryptoError(Exception):
    """A missing, malformed or wrong data key, or a ciphertext that does not verify."""


def key_digest(secret: str) -> str:
    """The one digest of an API key's secret: what the database stores and auth looks up.
    Plain SHA-256 suffices: secrets are 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id(key: bytes) -> str:
    """A short public name for a key: not secret, it only says which key sealed a value."""
    return hashlib.sha256(b"nitroproxy-key-id:" + key).hexdigest()[:8]


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _decode(entry: str) -> bytes:
    text = entry.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != 32:
        raise CryptoError(f"{ENV_VAR}: each key must be 32 bytes in base64")
    return raw


class Keyring:
    """The data keys: the first seals, any of them opens."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise CryptoError(f"{ENV_VAR} is not set")
        self._primary = keys[0]
        self.primary_id = key_id(keys[0])
        self._aead = {key_id(k): AESGCM(k) for k in keys}
        # Blind indexes and cache lookups use a key derived for that purpose only, so an
        # index value reveals nothing usable against the encryption key.
        self._index_keys = [hmac.digest(k, b"nitroproxy-blind-index", "sha256") for k in keys]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Keyring:
        value = (env if env is not None else os.environ).get(ENV_VAR, "")
        return cls([_decode(e) for e in value.split(",") if e.strip()])

    @property
    def key_ids(self) -> list[str]:
        return list(self._aead)

    def seal(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        """``g1`` | key id (8 ASCII) | nonce (12) | ciphertext+tag. ``context`` is bound as
        associated data (e.g. table and column), so a value cannot be moved to another row
        kind and still open."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead[self.primary_id].encrypt(nonce, plaintext, context)
        return _VERSION + self.primary_id.encode() + nonce + sealed

    def open(self, blob: bytes, *, context: bytes = b"") -> bytes:
        if len(blob) < 2 + 8 + _NONCE + 16 or blob[:2] != _VERSION:
            raise CryptoError("not a sealed value")
        kid = blob[2:10].decode("ascii", "replace")
        aead = self._aead.get(kid)
        if aead is None:
            raise CryptoError(f"sealed with key {kid}, which {ENV_VAR} does not hold")
        try:
            return aead.decrypt(blob[10 : 10 + _NONCE], blob[10 + _NONCE :], context)
        except InvalidTag:
            raise CryptoError(f"value does not verify under key {kid}") from None

    @staticmethod
    def sealed_key_id(blob: bytes) -> str:
        return blob[2:10].decode("ascii", "replace")

    def seal_text(self, text: str, *, context: str) -> bytes:
        return self.seal(text.encode(), context=context.encode())

    def open_text(self, blob: bytes, *, context: str) -> str:
        return self.open(blob, context=context.encode()).decode()

    def blind_index(self, value: str, *, purpose: str) -> str:
        """A keyed hash for equality lookups (emails, cache keys) without the plaintext,
        under the primary key."""
        return self._index(self._index_keys[0], value, purpose)

    def blind_indexes(self, value: str, *, purpose: str) -> list[str]:
        """The value's index under every key, primary first: a lookup during a rotation
        finds rows not yet re-indexed."""
        return [self._index(k, value, purpose) for k in self._index_keys]

    @staticmethod
    def _index(key: bytes, value: str, purpose: str) -> str:
        return hmac.new(key, f"{purpose}\x00{value}".encode(), "sha256").hexdigest()
