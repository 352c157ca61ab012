"""The ledger: accounts, and the transfers that are the only way money moves between them.

Modelled on TigerBeetle. Every movement of money is a transfer of a positive amount from one account to another,
with an id that makes it happen once (a retried or replayed transfer changes nothing). So the sum over all
accounts never changes, and money enters only through the operator's funding account:

| account | holds | may go below zero |
|---|---|---|
| `operator:funding` | minus everything the operator has funded (money from outside) | yes: it is the source |
| `operator:revenue` | what the operator was paid: provider costs of managed requests, BYOK fees | no |
| `merchant:<id>` | the merchant's wallet | no |
| `customer:<id>` | the customer's balance, funded by the merchant | no |

Balances are stored beside their owners (`merchants.balance_nanos`, `customers.balance_nanos`, and
`ledger_accounts` for the operator's two) and changed only here, in the same transaction as the transfer rows.
The database refuses a balance below zero or past `MAX_BALANCE_NANOS` (a CHECK constraint on PostgreSQL, a trigger
on SQLite), so an overdraft is impossible rather than merely checked, and a balance never leaves the 64-bit
integer range. Reservations are the pending side (holds.py): a hold sets part of a balance aside; what a request
really costs is posted as transfers when its record is billed (settle.py), and the rest of the hold is voided.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from itertools import chain
from typing import Any

import msgspec

from ..clock import now_iso
from ..store.db import Database, Tx
from .payer import Payer

MAX_AMOUNT_NANOS = 10**18  # one billion USD: the most any one amount a client sends may be
MAX_BALANCE_NANOS = 4 * 10**18  # four billion USD: a balance stays far inside a signed 64-bit integer

FUNDING = Payer("operator", "funding")
REVENUE = Payer("operator", "revenue")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_accounts (
    account_id    TEXT PRIMARY KEY,
    balance_nanos BIGINT NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id    TEXT PRIMARY KEY,
    debit_account  TEXT NOT NULL,
    credit_account TEXT NOT NULL,
    amount_nanos   BIGINT NOT NULL CHECK (amount_nanos > 0),
    kind           TEXT NOT NULL,
    merchant_id    TEXT,
    request_id     TEXT,
    created_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_by_debit ON transfers (debit_account, created_at, transfer_id);
CREATE INDEX IF NOT EXISTS transfers_by_credit ON transfers (credit_account, created_at, transfer_id);
"""
# An index on (merchant_id, request_id) is no longer kept: no query looks transfers up by request (verify reads
# them all; a request's transfer ids begin with "<merchant>:<request>:", so the primary key finds them), and every
# transfer the log writer posted paid for one more B-tree insert. A database made before drops it once, best
# effort: on PostgreSQL DROP INDEX waits for every transaction on `transfers`, so it gives up after 2 s (the
# index then stays until a later start) rather than hold up this one.
_DROP_OLD_INDEXES = {
    "sqlite": "DROP INDEX IF EXISTS transfers_by_request",
    "postgres": """
DO $$ BEGIN
  IF to_regclass('transfers_by_request') IS NOT NULL THEN
    SET LOCAL lock_timeout = '2s';
    DROP INDEX IF EXISTS transfers_by_request;
  END IF;
EXCEPTION WHEN lock_not_available THEN NULL; END $$;
""",
}

# An overdraft, or a balance past the range (SQLite turns an integer overflow into a float), aborts the
# transaction that tried it.
_ABORT = "BEGIN SELECT RAISE(ABORT, 'ledger: a balance would leave its range'); END;"
_SQLITE_GUARDS = f"""
CREATE TRIGGER IF NOT EXISTS merchants_balance_in_range BEFORE UPDATE OF balance_nanos ON merchants
WHEN typeof(NEW.balance_nanos) <> 'integer' OR NEW.balance_nanos < 0 OR NEW.balance_nanos > {MAX_BALANCE_NANOS}
{_ABORT}
CREATE TRIGGER IF NOT EXISTS customers_balance_in_range BEFORE UPDATE OF balance_nanos ON customers
WHEN typeof(NEW.balance_nanos) <> 'integer' OR NEW.balance_nanos < 0 OR NEW.balance_nanos > {MAX_BALANCE_NANOS}
{_ABORT}
CREATE TRIGGER IF NOT EXISTS ledger_accounts_balance_in_range BEFORE UPDATE OF balance_nanos ON ledger_accounts
WHEN typeof(NEW.balance_nanos) <> 'integer' OR NEW.balance_nanos > {MAX_BALANCE_NANOS}
  OR NEW.balance_nanos < CASE WHEN NEW.account_id = 'funding' THEN -{MAX_BALANCE_NANOS} ELSE 0 END
{_ABORT}
"""
# ALTER TABLE takes an ACCESS EXCLUSIVE lock even when the constraint is already there: gateways starting together
# then each upgrade their lock on the same table and deadlock, and a gateway starting under load would stall every
# region's billing. So the constraint is looked up first, and added only where it is missing.
_POSTGRES_GUARDS = "".join(f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = '{table}'::regclass
                 AND conname = '{table}_balance_in_range') THEN
    ALTER TABLE {table} ADD CONSTRAINT {table}_balance_in_range CHECK ({check});
  END IF;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
""" for table, check in (
    ("merchants", f"balance_nanos BETWEEN 0 AND {MAX_BALANCE_NANOS}"),
    ("customers", f"balance_nanos BETWEEN 0 AND {MAX_BALANCE_NANOS}"),
    ("ledger_accounts", f"balance_nanos BETWEEN -{MAX_BALANCE_NANOS} AND {MAX_BALANCE_NANOS} AND "
                        "(account_id = 'funding' OR balance_nanos >= 0)")))


def schema(dialect: str) -> str:
    return SCHEMA + (_POSTGRES_GUARDS if dialect == "postgres" else _SQLITE_GUARDS)


async def drop_old_indexes(db: Database) -> None:
    """Drop the ledger's indexes that are no longer kept (_DROP_OLD_INDEXES); nothing when they are gone."""
    await db.execute(_DROP_OLD_INDEXES[db.dialect])


async def open_accounts(db: Database) -> None:
    """The operator's two accounts exist from the start (idempotent, for every worker). A database from before the
    ledger gets one `opening` transfer from the funding account per balance it holds, so the ledger balances
    from then on; requests logged before that (`ledger_start`) are not checked against transfers."""
    for account in (FUNDING, REVENUE):
        await db.execute("INSERT INTO ledger_accounts VALUES (?, 0, ?) ON CONFLICT (account_id) DO NOTHING",
                         account.id, now_iso())
    if await db.fetchone("SELECT 1 FROM transfers LIMIT 1") is not None:
        return
    async with db.transaction() as tx:
        opened = 0
        for kind, table, column in (("merchant", "merchants", "merchant_id"), ("customer", "customers",
                                                                                   "customer_id")):
            for ident, balance in await tx.fetchall(f"SELECT {column}, balance_nanos FROM {table} "
                                                    "WHERE balance_nanos <> 0 ORDER BY 1"):
                added = await tx.fetchall(
                    "INSERT INTO transfers VALUES (?, ?, ?, ?, 'opening', NULL, NULL, ?) ON CONFLICT (transfer_id) "
                    "DO NOTHING RETURNING amount_nanos", f"opening:{kind}:{ident}", account_id(FUNDING),
                    f"{kind}:{ident}", int(balance), now_iso())
                opened += sum(int(a) for (a,) in added)
        if opened:  # the balances are there already: only the funding account records where they came from
            await tx.execute("UPDATE ledger_accounts SET balance_nanos = balance_nanos - ? WHERE account_id = ?",
                             opened, FUNDING.id)


async def ledger_start(db: Database | Tx) -> str:
    """When this database's ledger began: requests logged before it have no transfers."""
    row = await db.fetchone("SELECT created_at FROM ledger_accounts WHERE account_id = ?", FUNDING.id)
    return str(row[0]) if row else ""


def is_range_error(exc: BaseException) -> bool:
    """The database refused a transfer because a balance would leave its range (the guards above)."""
    return (type(exc).__name__ in ("IntegrityError", "CheckViolationError", "NumericValueOutOfRangeError")
            and ("balance" in str(exc) or "out of range" in str(exc)))


class Transfer(msgspec.Struct, frozen=True):
    """One movement of money (a Struct: the log writer makes one or two per billed request, at C speed)."""

    transfer_id: str
    debit: Payer
    credit: Payer
    amount: int
    kind: str  # funding | credit | charge | provider_cost | fee | refund | correction | opening
    merchant_id: str | None = None
    request_id: str | None = None


def account_id(p: Payer) -> str:
    return f"{p.kind}:{p.id}"


def parse_account(text: str) -> Payer:
    kind, _, ident = text.partition(":")
    if kind not in ("merchant", "customer", "operator") or not ident:
        raise ValueError(f"not an account: {text!r}")
    return Payer(kind, ident)


# PostgreSQL: a batch's rows as one JSON text (msgspec encodes it at C speed; the server parses it once, as jsonb).
# Eight array parameters for unnest() cost asyncpg two isinstance() checks against abstract classes per value,
# about 4 us per transfer in the writer process.
_INSERT_JSON = ("INSERT INTO transfers SELECT t->>0, t->>1, t->>2, (t->>3)::bigint, t->>4, t->>5, t->>6, t->>7 "
                "FROM jsonb_array_elements(?::jsonb) AS t")
_encode = msgspec.json.encode


def _insert_many_sql(n: int, _cache: dict[int, str] = {}) -> str:  # noqa: B006 - memo of statement text
    text = _cache.get(n)
    if text is None:
        text = _cache[n] = "INSERT INTO transfers VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * n)
    return text


async def post(tx: Tx, transfers: Iterable[Transfer], *, once: bool = False) -> list[Transfer]:
    """Record transfers and move their money, in the caller's transaction. With `once`, a transfer whose id is
    already recorded is skipped (an idempotent retry); otherwise a repeated id fails the whole transaction.
    Returns the transfers posted now. Balances change one statement per table, rows in key order (PostgreSQL
    takes the row locks of two concurrent batches in the same order)."""
    now = now_iso()
    posted = [t for t in transfers if t.amount > 0]
    rows = []
    names: dict[Payer, str] = {}  # each account's id text, made once: a batch has a few accounts, many transfers
    for t in posted:
        debit, credit = names.get(t.debit), names.get(t.credit)
        if debit is None:
            debit = names[t.debit] = account_id(t.debit)
        if credit is None:
            credit = names[t.credit] = account_id(t.credit)
        rows.append((t.transfer_id, debit, credit, t.amount, t.kind, t.merchant_id, t.request_id, now))
    if once:
        kept = []
        for t, row in zip(posted, rows):
            if await tx.fetchall("INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (transfer_id) "
                                 "DO NOTHING RETURNING transfer_id", *row):
                kept.append(t)
        posted = kept
    elif rows and tx.dialect == "postgres":  # one statement for the batch, not one a row
        await tx.execute(_INSERT_JSON, _encode(rows).decode())
    elif rows:  # SQLite: 100 rows a statement (a billing batch posts hundreds; ~7 % cheaper a row than executemany)
        for i in range(0, len(rows), 100):
            chunk = rows[i:i + 100]
            await tx.execute(_insert_many_sql(len(chunk)), *chain.from_iterable(chunk))
    await apply(tx, posted)
    return posted


async def apply(tx: Tx, transfers: Iterable[Transfer]) -> None:
    delta: dict[Payer, int] = defaultdict(int)
    for t in transfers:
        delta[t.debit] -= t.amount
        delta[t.credit] += t.amount
    by_table: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for account, change in sorted(delta.items()):
        if change:
            by_table[(account.table, account.key_column)].append((change, account.id))
    for (table, column), rows in by_table.items():
        await tx.executemany(f"UPDATE {table} SET balance_nanos = balance_nanos + ? WHERE {column} = ?", rows)


async def balances(tx: Tx | Database, accounts: Iterable[Payer], *, lock: bool = False) -> dict[Payer, int]:
    """The balances of these accounts now (PostgreSQL: with `lock`, their rows locked for this transaction)."""
    wanted: dict[tuple[str, str], list[str]] = defaultdict(list)
    for a in sorted(set(accounts)):
        wanted[(a.table, a.key_column)].append(a.id)
    out: dict[Payer, int] = {}
    suffix = " FOR UPDATE" if lock and tx.dialect == "postgres" else ""
    kinds = {("merchants", "merchant_id"): "merchant", ("customers", "customer_id"): "customer",
             ("ledger_accounts", "account_id"): "operator"}
    for (table, column), ids in wanted.items():
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = await tx.fetchall(f"SELECT {column}, balance_nanos FROM {table} WHERE {column} IN "
                                     f"({', '.join('?' * len(chunk))}) ORDER BY {column}{suffix}", *chunk)
            out.update((Payer(kinds[(table, column)], ident), int(balance)) for ident, balance in rows)
    return out


async def history(db: Database, account: Payer, cursor: tuple[str, ...] | None,
                  limit: int) -> list[tuple[Any, ...]]:
    """An account's transfers, newest first, after `cursor` = (created_at, transfer_id): up to limit + 1 rows of
    (transfer_id, debit, credit, amount, kind, request_id, created_at)."""
    me = account_id(account)
    where, args = "(debit_account = ? OR credit_account = ?)", [me, me]
    if cursor is not None:
        where += " AND (created_at < ? OR (created_at = ? AND transfer_id < ?))"
        args += [cursor[0], cursor[0], cursor[1]]
    return await db.fetchall(f"SELECT transfer_id, debit_account, credit_account, amount_nanos, kind, request_id, "
                             f"created_at FROM transfers WHERE {where} ORDER BY created_at DESC, transfer_id DESC "
                             "LIMIT ?", *args, limit + 1)
