"""The billing tables, shared by SQLite and PostgreSQL (see store/db.py for the type rules).

Money columns are integer nano-dollars. JSON columns are TEXT. Rows are soft-deleted (`deleted_at`).
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id             TEXT PRIMARY KEY,
    merchant_id             TEXT NOT NULL,
    reference_id            TEXT,
    name                    TEXT,
    email                   TEXT,
    phone                   TEXT,
    metadata                TEXT,
    balance_nanos           BIGINT NOT NULL DEFAULT 0,
    autopay_threshold_nanos BIGINT,
    autopay_amount_nanos    BIGINT,
    autopay_armed           BIGINT NOT NULL DEFAULT 1,
    created_at              TEXT NOT NULL,
    deleted_at              TEXT
);
CREATE INDEX IF NOT EXISTS customers_by_merchant ON customers (merchant_id, created_at, customer_id);

CREATE TABLE IF NOT EXISTS meters (
    meter_id    TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    meter_slug  TEXT NOT NULL,
    name        TEXT NOT NULL,
    rate_type   TEXT NOT NULL,
    tier_type   TEXT NOT NULL,
    tiers       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    deleted_at  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS meters_by_slug ON meters (merchant_id, meter_slug) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS meter_usage (
    meter_id    TEXT NOT NULL,
    payer_id    TEXT NOT NULL,
    units       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (meter_id, payer_id)
);

CREATE TABLE IF NOT EXISTS webhooks (
    webhook_id  TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    deleted_at  TEXT
);

-- Webhook deliveries still owed, and the record of those done or given up (billing/webhook_deliveries.py).
-- status: pending (owed; due at next_attempt_at unless a worker's claim runs until claimed_until),
-- delivered, failed (gave up after the last attempt). Times are epoch seconds.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id     TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL,
    merchant_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    claimed_until   DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_deliveries_once ON webhook_deliveries (webhook_id, event_id);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_recent ON webhook_deliveries (webhook_id, created_at);

CREATE TABLE IF NOT EXISTS credits (
    credit_id    TEXT PRIMARY KEY,
    merchant_id  TEXT NOT NULL,
    payer_kind   TEXT NOT NULL,
    payer_id     TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    source       TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS credits_by_merchant ON credits (merchant_id, created_at, credit_id);

CREATE TABLE IF NOT EXISTS holds (
    hold_id      TEXT PRIMARY KEY,
    payer_kind   TEXT NOT NULL,
    payer_id     TEXT NOT NULL,
    amount_nanos BIGINT NOT NULL,
    expires_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS holds_by_payer ON holds (payer_kind, payer_id);

CREATE TABLE IF NOT EXISTS spend_keys (
    spend_key_id      TEXT PRIMARY KEY,
    merchant_id       TEXT NOT NULL,
    key_hash          TEXT NOT NULL UNIQUE,
    key_preview       TEXT NOT NULL,
    name              TEXT NOT NULL,
    status            TEXT NOT NULL,
    request_shape     TEXT,
    allowed_models    TEXT,
    allowed_providers TEXT,
    spend_limit       TEXT,
    request_limit     TEXT,
    rate_limit        TEXT,
    expires_at        TEXT,
    last_used_at      TEXT,
    total_spend_nanos BIGINT NOT NULL DEFAULT 0,
    total_requests    BIGINT NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL
);
"""
