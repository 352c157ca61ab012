"""The spend-key counter tables (SQL mode, and the durable spend record in Redis mode); see spend_counters.py.

Shared by SQLite and PostgreSQL (store/db.py type rules). Money is integer nano-dollars; times are epoch seconds.

- `spend_key_counters`: per key and period ("daily:2025-05-07", "weekly:2025-05-05", "monthly:2025-05", "total"),
  the billed spend (written by the log writer, in the billing transaction) and the admitted requests (written at
  admission, SQL mode only; in Redis mode they live in Redis).
- `spend_key_reservations`: one row per request in flight on a key with a spend limit: the most it can cost.
  The billing transaction deletes it; one that is never billed (its worker died) stops counting at `expires_at`.
- `spend_key_state`: the rate-limit token bucket, and the row each admission locks first so that admissions of
  one key are serialized (SQLite's BEGIN IMMEDIATE already serializes; on PostgreSQL the upsert takes a row lock).
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS spend_key_counters (
    spend_key_id TEXT NOT NULL,
    period       TEXT NOT NULL,
    spend_nanos  BIGINT NOT NULL DEFAULT 0,
    requests     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (spend_key_id, period)
);

CREATE TABLE IF NOT EXISTS spend_key_reservations (
    request_id   TEXT PRIMARY KEY,
    spend_key_id TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    expires_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_key_reservations_by_key ON spend_key_reservations (spend_key_id, expires_at);

CREATE TABLE IF NOT EXISTS spend_key_state (
    spend_key_id TEXT PRIMARY KEY,
    tokens       DOUBLE PRECISION,
    refilled_at  DOUBLE PRECISION NOT NULL
);
"""
