"""`edge-proxy customers ...` and `edge-proxy meters ...`: billing commands, each printing JSON.

Operators' scripts rely on these forms; money is a decimal USD string:
    customers create --secret-key K [--balance USD] [--autopay-threshold USD --autopay-amount USD]
    customers show   --secret-key K --customer-id C
    customers credit --secret-key K --customer-id C --amount USD [--idempotency-key KEY]
    meters create    --secret-key K --slug S --rate-type fixed|percentage
                     --tier-type tokens_1m|characters_1m|minutes|requests --rate R [--name N]
Customers and meters print in the same shapes as the REST API. A bad input is one line on stderr and exit 1.
A customer's balance (`--balance`, `credit`) is a transfer from the merchant's wallet, as over the REST API.
"""
from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .api import customers as api
from .api import meters
from .api.meters import RATE_TYPES, TIER_TYPES
from .billing import accounts
from .billing.accounts import Tier
from .billing.balances import Balances
from .errors import CommandError, GatewayError, InsufficientBalance, InvalidRequest, NotFound
from .settings import Settings
from .store import SQLStore, hash_secret

StoreCommand = Callable[[argparse.Namespace, SQLStore], Awaitable[Any]]


@contextlib.asynccontextmanager
async def open_balances(args: argparse.Namespace, store: SQLStore) -> AsyncIterator[Balances]:
    """Balances for a command run on the host: SQL holds, or Redis (mirrored) when EDGE_PROXY_REDIS_URL is set."""
    from .billing.holds import RedisHolds, SQLHolds
    settings = Settings.load(flags={"config": args.config})
    if not settings.redis_url:
        yield Balances(store.db, SQLHolds(store.db))
        return
    from .store.redis_client import open_redis
    client = open_redis(settings.redis_url, 5)
    redis_holds = RedisHolds(client, store.db, settings.region, settings.region_lease_ttl)
    try:
        yield Balances(store.db, redis_holds, redis_holds)
    finally:
        await client.aclose()


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 store_command: Callable[[StoreCommand], Callable[[argparse.Namespace], int]]) -> None:
    """Register the billing subcommands on the CLI's subparsers. `store_command(fn)` wraps an
    `async fn(args, store)` so that it runs with the store open and its return value printed as JSON."""
    customers = sub.add_parser("customers", help="create, show and credit customers").add_subparsers(
        metavar="ACTION")
    c = customers.add_parser("create", help="create a customer of the merchant")
    c.add_argument("--secret-key", required=True, help="the merchant's secret key")
    c.add_argument("--balance", default="0", help="starting balance, USD, from the merchant's wallet")
    c.add_argument("--autopay-threshold", help="USD: refill when the balance falls below this")
    c.add_argument("--autopay-amount", help="USD: how much each refill adds")
    c.set_defaults(run=store_command(_guarded(_customers_create)))
    c = customers.add_parser("show", help="show a customer and its balance")
    c.add_argument("--secret-key", required=True)
    c.add_argument("--customer-id", required=True)
    c.set_defaults(run=store_command(_guarded(_customers_show)))
    c = customers.add_parser("credit", help="move funds from the merchant's wallet to a customer")
    c.add_argument("--secret-key", required=True)
    c.add_argument("--customer-id", required=True)
    c.add_argument("--amount", required=True, help="USD")
    c.add_argument("--idempotency-key", help="the same key again credits once")
    c.set_defaults(run=store_command(_guarded(_customers_credit)))

    meters = sub.add_parser("meters", help="create meters").add_subparsers(metavar="ACTION")
    c = meters.add_parser("create", help="create a meter with one tier starting at 0")
    c.add_argument("--secret-key", required=True)
    c.add_argument("--slug", required=True)
    c.add_argument("--name", help="display name (default: the slug)")
    c.add_argument("--rate-type", required=True, choices=RATE_TYPES)
    c.add_argument("--tier-type", required=True, choices=TIER_TYPES)
    c.add_argument("--rate", required=True, help="fixed: USD per unit of the tier type; percentage: percent")
    c.set_defaults(run=store_command(_guarded(_meters_create)))


def _guarded(fn: StoreCommand) -> StoreCommand:
    """Turn the API's validation errors (which name the field) into the CLI's one-line errors."""
    async def run(args: argparse.Namespace, store: SQLStore) -> Any:
        try:
            return await fn(args, store)
        except GatewayError as exc:
            raise CommandError(exc.message) from None
    return run


async def _merchant_id(store: SQLStore, secret_key: str) -> str:
    key = await store.find_secret_key(hash_secret(secret_key))
    if key is None or key.revoked:
        raise InvalidRequest("--secret-key: unknown or revoked secret key")
    return key.merchant_id


async def _customers_create(args: argparse.Namespace, store: SQLStore) -> dict[str, Any]:
    mid = await _merchant_id(store, args.secret_key)
    balance = api.money(args.balance, "--balance")
    if (args.autopay_threshold is None) != (args.autopay_amount is None):
        raise InvalidRequest("--autopay-threshold and --autopay-amount go together")
    fields: dict[str, Any] = {}
    if args.autopay_amount is not None:
        fields["autopay_threshold_nanos"] = api.money(args.autopay_threshold, "--autopay-threshold")
        fields["autopay_amount_nanos"] = api.money(args.autopay_amount, "--autopay-amount", positive=True)
    customer = await accounts.create_customer(store.db, mid, fields)
    if balance:
        async with open_balances(args, store) as balances:
            try:
                customer = await api.credit_customer(balances, store.db, mid, customer.customer_id, balance)
            except InsufficientBalance:
                await accounts.delete_customer(store.db, mid, customer.customer_id)  # all or nothing
                raise
    return api.to_api(customer)


async def _customers_show(args: argparse.Namespace, store: SQLStore) -> dict[str, Any]:
    mid = await _merchant_id(store, args.secret_key)
    customer = await accounts.customer(store.db, mid, args.customer_id)
    if customer is None:
        raise NotFound(f"--customer-id: no customer {args.customer_id!r} for this merchant")
    return api.to_api(customer)


async def _customers_credit(args: argparse.Namespace, store: SQLStore) -> dict[str, Any]:
    mid = await _merchant_id(store, args.secret_key)
    nanos = api.money(args.amount, "--amount", positive=True)
    if await accounts.customer(store.db, mid, args.customer_id) is None:
        raise NotFound(f"--customer-id: no customer {args.customer_id!r} for this merchant")
    async with open_balances(args, store) as balances:
        return api.to_api(await api.credit_customer(balances, store.db, mid, args.customer_id, nanos,
                                                    args.idempotency_key))


async def _meters_create(args: argparse.Namespace, store: SQLStore) -> dict[str, Any]:
    mid = await _merchant_id(store, args.secret_key)
    slug = meters.slug_checked(args.slug, "--slug")
    name = api.text({"--name": args.name if args.name is not None else args.slug}, "--name", required=True)
    tiers = [Tier(0, meters.rate_of(args.rate, "--rate"))]
    meter = await meters.create(store.db, mid, name, slug, args.rate_type, args.tier_type, tiers, "--slug")
    return meters.to_api(meter)
