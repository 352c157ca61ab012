"""The dashboard's tables, shared by SQLite and PostgreSQL (see store/db.py for the type rules).

Times are epoch seconds (DOUBLE PRECISION), compared as numbers. A session row holds the SHA-256 of the session
id, never the id itself: the id lives only in the browser's cookie.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    session_hash  TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL,
    secret_key_id TEXT NOT NULL,
    csrf_token    TEXT NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL,
    last_seen_at  DOUBLE PRECISION NOT NULL,
    expires_at    DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_by_key ON dashboard_sessions (secret_key_id);

CREATE TABLE IF NOT EXISTS dashboard_sign_in_failures (
    address   TEXT NOT NULL,
    failed_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sign_in_failures_by_address ON dashboard_sign_in_failures (address, failed_at);
"""
