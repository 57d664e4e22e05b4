"""Dashboard sessions: a cookie instead of a key on every request, and a CSRF token on every
write.

Signing in with a key opens a session in this process's memory; the browser keeps only a
random session token in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` under TLS),
and the table keeps the token's digest and the key's digest, never either secret. Every
request re-checks the key through the authenticator, so a key revoked, expired or suspended
ends its sessions at their next request. A write (any method but GET and HEAD) must also
send the session's CSRF token in ``X-CSRF-Token``, which a page of another site cannot read,
and an ``Origin``, when the browser sends one, must be this host.

The table is bounded: past ``MAX_SESSIONS`` the least recently opened session is closed.
Sessions do not survive a restart and are not shared between processes.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from nitroproxy.config import UISettings
from nitroproxy.core.errors import PermissionDenied, ProxyError, Unauthenticated
from nitroproxy.core.principal import Principal
from nitroproxy.security.crypto import key_digest
from nitroproxy.web.appkeys import AUTH

COOKIE = "nitroproxy_ui"
COOKIE_PATH = "/ui/"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSIONS = 1000
SAFE_METHODS = frozenset({"GET", "HEAD"})

VIA_SESSION = web.RequestKey("ui_session_principal", Principal)
"""Set by the dashboard's routes on a request a session has authorised; the admin and key
routes they reuse then skip their own header check."""


@dataclass(slots=True)
class Session:
    key_digest: str
    csrf: str
    opened: float
    seen: float


class SessionBook:
    def __init__(self, settings: UISettings, *, clock: Callable[[], float] = time.monotonic):
        self._ttl = settings.session_ttl
        self._idle = settings.session_idle
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, key_digest_: str) -> tuple[str, Session]:
        """A new session for the key with this digest; returns (token, session)."""
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(key_digest_, secrets.token_urlsafe(32), now, now)
        self._sessions[key_digest(token)] = session
        return token, session

    def get(self, token: str) -> Session | None:
        digest = key_digest(token)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self._clock()
        if now - session.opened >= self._ttl or now - session.seen >= self._idle:
            del self._sessions[digest]
            return None
        session.seen = now
        return session

    def close(self, token: str) -> None:
        self._sessions.pop(key_digest(token), None)


SESSIONS = web.AppKey("ui_sessions", SessionBook)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser's cross-site request: those always carry Origin
    return urlsplit(origin).netloc == request.host


def check_origin(request: web.Request) -> None:
    if not _same_origin(request):
        raise PermissionDenied("cross-site request refused", code="cross_site_request")


def authorise(request: web.Request) -> tuple[Session, Principal]:
    """The session of this request and its key's principal, or 401; a write also needs the
    session's CSRF token (403 without it)."""
    token = request.cookies.get(COOKIE)
    session = request.app[SESSIONS].get(token) if token else None
    if token is None or session is None:
        raise Unauthenticated("sign in first: no dashboard session", code="no_session")
    try:
        principal = request.app[AUTH].authenticate_digest(session.key_digest)
    except ProxyError:
        request.app[SESSIONS].close(token)
        raise
    if request.method not in SAFE_METHODS:
        check_origin(request)
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise PermissionDenied(
                f"a write needs this session's {CSRF_HEADER} header", code="csrf_failed"
            )
    request[VIA_SESSION] = principal
    return session, principal


def require_admin(request: web.Request) -> Principal:
    """The admin whose key is in the headers, or whose dashboard session this is."""
    via = request.get(VIA_SESSION)
    if isinstance(via, Principal) and via.admin:
        return via
    return request.app[AUTH].authenticate_admin(request.headers)


def set_cookie(response: web.StreamResponse, request: web.Request, token: str, ttl: float) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(ttl),
        path=COOKIE_PATH,
        httponly=True,
        secure=request.secure,
        samesite="Strict",
    )


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(
        COOKIE, path=COOKIE_PATH, httponly=True, secure=request.secure, samesite="Strict"
    )
