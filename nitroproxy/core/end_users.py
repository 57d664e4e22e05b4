"""End users: who a client's request is for, as the client says (OpenAI's ``user``,
Anthropic's ``metadata.user_id``), and what of it a record may keep.

``privacy.end_user`` decides: ``off`` keeps nothing, ``pseudonymous`` (the default) keeps a
keyed HMAC of the value (the same end user always gets the same pseudonym, which cannot be
turned back into the value without the installation's key), ``plain`` keeps the value as
sent. Limits per end user are keyed by the pseudonym in every mode, so they work even when
nothing is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.types import ApiFormat

MAX_LENGTH = 256
_PREFIX = "eu_"


class EndUserMode(StrEnum):
    OFF = "off"
    PSEUDONYMOUS = "pseudonymous"
    PLAIN = "plain"


def from_body(body: Mapping[str, Any], fmt: ApiFormat) -> str | None:
    """The end user a request names, or None; a value that is not a short string is a 400
    (it would otherwise be forwarded to a provider that rejects it, or recorded)."""
    if fmt is ApiFormat.ANTHROPIC:
        metadata = body.get("metadata")
        if metadata is None:
            return None
        if not isinstance(metadata, Mapping):
            raise InvalidRequest("metadata must be an object", param="metadata")
        value, param = metadata.get("user_id"), "metadata.user_id"
    else:
        value, param = body.get("user"), "user"
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be a string", param=param)
    if len(value) > MAX_LENGTH:
        raise InvalidRequest(f"{param} must be at most {MAX_LENGTH} characters", param=param)
    return value or None


class EndUsers:
    """Pseudonyms under one installation key (32 random bytes kept in the database)."""

    __slots__ = ("_key", "mode")

    def __init__(self, mode: EndUserMode, key: bytes) -> None:
        self.mode = mode
        self._key = key

    def pseudonym(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return _PREFIX + digest[:32]

    def recorded(self, value: str | None) -> str | None:
        """What the record keeps of ``value`` under the mode."""
        if value is None or self.mode is EndUserMode.OFF:
            return None
        if self.mode is EndUserMode.PLAIN:
            return value
        return self.pseudonym(value)

    def from_record(self, recorded: str) -> str:
        """The pseudonym of a recorded value (limits are keyed by it in every mode)."""
        return self.pseudonym(recorded) if self.mode is EndUserMode.PLAIN else recorded
