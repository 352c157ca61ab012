"""Dashboard sign-in: who may sign in, the session rows that follow, and the limit on failed attempts.

Only a merchant secret key (`ep_sk_...`) signs in, checked as the REST API checks it (its hash in `secret_keys`,
not revoked). A session is 32 random bytes; the browser keeps them (url-safe base64) in a cookie and the table
keeps only their SHA-256, so a copy of the database opens no session. Each request reads its session joined with
its secret key: a key revoked anywhere (REST, CLI, dashboard) ends its sessions at the next request, with no cache
to wait out. A session ends after `idle` seconds without a request or `lifetime` seconds after sign-in, whichever
comes first.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable

import msgspec

from ..billing.spend_key_store import SPEND_KEY_PREFIX
from ..errors import Forbidden, InvalidToken, RateLimited
from ..store import SECRET_KEY_PREFIX, SQLStore, hash_secret
from ..store.db import Database

FAILURE_WINDOW = 900.0  # seconds over which failed sign-ins from one address are counted
TOUCH_EVERY = 60.0      # seconds between writes of a session's last_seen_at (idle expiry is this coarse)


class SignInRefused(InvalidToken):
    """The credential cannot open a dashboard session; the message says why, in words a person reads."""


class NotAMerchantKey(SignInRefused):
    status = 403
    type = Forbidden.type


class TooManySignIns(RateLimited):
    message = "too many failed sign-ins from this address; wait 15 minutes and try again"


class Session(msgspec.Struct, frozen=True):
    session_hash: str
    merchant_id: str
    merchant_name: str
    secret_key_id: str
    csrf_token: str
    created_at: float
    last_seen_at: float
    expires_at: float


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


def new_session_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def kind_of(credential: str) -> str:
    """Which kind of credential was pasted, so a refusal can say what to paste instead."""
    if credential.startswith(SPEND_KEY_PREFIX):
        return "spend key"
    if credential.startswith(SECRET_KEY_PREFIX):
        return "secret key"
    return "other"


_SESSION_SELECT = (
    "SELECT s.session_hash, s.merchant_id, m.name, s.secret_key_id, s.csrf_token, s.created_at, s.last_seen_at, "
    "s.expires_at FROM dashboard_sessions s "
    "JOIN secret_keys k ON k.secret_key_id = s.secret_key_id AND k.revoked_at IS NULL "
    "JOIN merchants m ON m.merchant_id = s.merchant_id "
    "WHERE s.session_hash = ?")


class Sessions:
    def __init__(self, store: SQLStore, idle: float, lifetime: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store  # the Store: find_secret_key, and its Database for the session rows
        self.idle = idle
        self.lifetime = lifetime
        self.clock = clock

    @property
    def db(self) -> Database:
        return self.store.db

    async def sign_in(self, credential: str) -> tuple[str, Session]:
        """A new session for a merchant secret key: (the id for the cookie, the session). Raises SignInRefused."""
        credential = credential.strip()
        kind = kind_of(credential)
        if kind == "spend key":
            raise NotAMerchantKey("spend keys cannot sign in to the dashboard: sign in with a merchant secret key "
                                  "(ep_sk_...)")
        if kind != "secret key":
            raise NotAMerchantKey("only a merchant secret key (ep_sk_...) signs in to the dashboard; forward tokens "
                                  "and provider keys cannot")
        key = await self.store.find_secret_key(hash_secret(credential))
        if key is None or key.revoked:
            raise SignInRefused("this secret key is unknown or has been revoked")
        now = self.clock()
        session_id = new_session_id()
        digest = session_hash(session_id)
        await self.db.execute("DELETE FROM dashboard_sessions WHERE expires_at < ? OR last_seen_at < ?",
                              now, now - self.idle)
        await self.db.execute("INSERT INTO dashboard_sessions VALUES (?, ?, ?, ?, ?, ?, ?)", digest,
                              key.merchant_id, key.secret_key_id, secrets.token_urlsafe(32), now, now,
                              now + self.lifetime)
        session = await self.find(session_id)
        if session is None:  # revoked between the check and the insert
            raise SignInRefused("this secret key is unknown or has been revoked")
        return session_id, session

    async def find(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, expired, or its secret key revoked)."""
        if not session_id or len(session_id) > 100:
            return None
        digest = session_hash(session_id)
        row = await self.db.fetchone(_SESSION_SELECT, digest)
        if row is None:
            return None
        session = Session(session_hash=row[0], merchant_id=row[1], merchant_name=row[2], secret_key_id=row[3],
                          csrf_token=row[4], created_at=float(row[5]), last_seen_at=float(row[6]),
                          expires_at=float(row[7]))
        now = self.clock()
        if now >= session.expires_at or now - session.last_seen_at >= self.idle:
            await self.db.execute("DELETE FROM dashboard_sessions WHERE session_hash = ?", digest)
            return None
        if now - session.last_seen_at >= TOUCH_EVERY:
            await self.db.execute("UPDATE dashboard_sessions SET last_seen_at = ? WHERE session_hash = ?", now, digest)
        return session

    async def end(self, session: Session) -> None:
        await self.db.execute("DELETE FROM dashboard_sessions WHERE session_hash = ?", session.session_hash)

    async def end_for_key(self, secret_key_id: str) -> None:
        """End every session opened with this secret key (it was just revoked)."""
        await self.db.execute("DELETE FROM dashboard_sessions WHERE secret_key_id = ?", secret_key_id)


class SignInThrottle:
    """At most `attempts` failed sign-ins per client address in FAILURE_WINDOW seconds, counted in the database
    so that every worker and every gateway process shares the count."""

    def __init__(self, db: Database, attempts: int, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.attempts = attempts
        self.clock = clock

    async def check(self, address: str) -> None:
        row = await self.db.fetchone("SELECT count(*) FROM dashboard_sign_in_failures WHERE address = ? AND "
                                     "failed_at > ?", address, self.clock() - FAILURE_WINDOW)
        if row is not None and int(row[0]) >= self.attempts:
            raise TooManySignIns(headers=[("retry-after", str(int(FAILURE_WINDOW)))])

    async def failed(self, address: str) -> None:
        now = self.clock()
        await self.db.execute("DELETE FROM dashboard_sign_in_failures WHERE failed_at <= ?", now - FAILURE_WINDOW)
        await self.db.execute("INSERT INTO dashboard_sign_in_failures VALUES (?, ?)", address, now)
