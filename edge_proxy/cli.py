"""`edge-proxy`: run the gateway and manage merchants and tokens. Every management command prints JSON.

The CLI reads the same settings as the server (flags, EDGE_PROXY_* variables, the TOML file), so both see the
same store.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from .errors import CommandError, GatewayError, SettingsError
from .forward_token import encode_forward_token
from .money import parse_usd, usd
from .settings import Settings
from .store import Merchant, SQLStore, hash_secret, open_store


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except SettingsError as exc:
        print(f"edge-proxy: setting error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"edge-proxy: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-proxy", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="TOML settings file (also EDGE_PROXY_CONFIG)")
    sub = p.add_subparsers(metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway (Granian, RSGI, uvloop)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="bind port (default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (default 1; use the core count in production)")
    serve.set_defaults(run=_serve)

    merchants = sub.add_parser("merchants", help="create, credit and show merchants").add_subparsers(metavar="ACTION")
    c = merchants.add_parser("create", help="create a merchant; prints its secret key once")
    c.add_argument("--name", required=True)
    c.add_argument("--balance", default="0", help="starting wallet balance, USD")
    c.set_defaults(run=_store_command(_merchants_create))
    c = merchants.add_parser("credit", help="fund a merchant's wallet (the operator's: money from outside)")
    c.add_argument("--secret-key", required=True)
    c.add_argument("--amount", required=True, help="USD")
    c.add_argument("--idempotency-key", help="the same key again funds once")
    c.set_defaults(run=_store_command(_merchants_credit))
    c = merchants.add_parser("show", help="show a merchant and its wallet balance")
    c.add_argument("--secret-key", required=True)
    c.set_defaults(run=_store_command(_merchants_show))

    from .cli_billing import add_commands
    add_commands(sub, _store_command)
    from .mcp import add_mcp_command
    add_mcp_command(sub)

    balances = sub.add_parser("balances", help="balance maintenance").add_subparsers(metavar="ACTION")
    c = balances.add_parser("reconcile", help="rebuild balances (SQL and Redis) from the ledger's transfers")
    c.set_defaults(run=_store_command(_balances_reconcile))
    ledger = sub.add_parser("ledger", help="the ledger of accounts and transfers").add_subparsers(metavar="ACTION")
    c = ledger.add_parser("verify", help="check that the ledger balances; exits 1 when it does not")
    c.set_defaults(run=_ledger_verify)

    tokens = sub.add_parser("tokens", help="make forward tokens").add_subparsers(metavar="ACTION")
    c = tokens.add_parser("create", help="print a forward token in Lava's format")
    c.add_argument("--secret-key", required=True)
    c.add_argument("--customer-id")
    c.add_argument("--meter-slug")
    c.add_argument("--provider-key", help="the provider's own key, for unmanaged (BYOK) requests")
    c.set_defaults(run=_tokens_create)
    return p


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(flags={"config": args.config})


def _serve(args: argparse.Namespace) -> int:
    settings = Settings.load(flags={"config": args.config, "host": args.host, "port": args.port,
                                    "workers": args.workers})
    open_store(settings.database_url)  # fail on a bad URL here, not in every worker
    from .providers import Catalogue
    Catalogue.load(settings.upstreams, settings.provider_keys)
    if settings.otel_endpoint:  # a missing `otel` extra is one line here, not a traceback in every worker
        from .observability.tracing import require_otel
        require_otel()
    # Every worker writes its metrics into one directory, emptied now, so any worker can report the sum.
    from .observability.publisher import prepare_multiprocess_dir, remove_multiprocess_dir
    metrics_dir, made_here = prepare_multiprocess_dir(settings, os.environ)
    settings = settings.with_(metrics_dir=metrics_dir)
    # Workers are separate processes that build their app from the environment: hand them these settings.
    os.environ.update(settings.to_env())
    try:
        _run_granian(settings)
    finally:
        if made_here:
            remove_multiprocess_dir(metrics_dir)
    return 0


def _run_granian(settings: Settings) -> None:
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        "edge_proxy.app:create_app",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,
        workers=settings.workers,
        loop=Loops.uvloop,
        log_level=LogLevels(settings.log_level),  # one of them: Settings checked it
        workers_kill_timeout=int(settings.shutdown_grace),
    ).serve()


def _store_command(fn: Callable[[argparse.Namespace, SQLStore], Awaitable[Any]]
                   ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def go() -> Any:
            store = open_store(_settings(args).database_url)
            await store.open()
            try:
                return await fn(args, store)
            finally:
                await store.close()
        _print(asyncio.run(go()))
        return 0
    return run


def _amount(text: str, what: str) -> int:
    """A USD amount as nano-dollars, within what any one amount may be (billing/ledger.py)."""
    from .billing.ledger import MAX_AMOUNT_NANOS
    try:
        nanos = parse_usd(text, what)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not 0 <= nanos <= MAX_AMOUNT_NANOS:
        raise CommandError(f"{what}: from 0 to {MAX_AMOUNT_NANOS // 10**9} USD")
    return nanos


async def _merchant_of(store: SQLStore, secret_key: str) -> Merchant:
    key = await store.find_secret_key(hash_secret(secret_key))
    if key is None or key.revoked:
        raise CommandError("unknown or revoked secret key")
    return await _merchant(store, key.merchant_id)


async def _merchant(store: SQLStore, merchant_id: str) -> Merchant:
    merchant = await store.get_merchant(merchant_id)
    if merchant is None:  # a key's merchant is never deleted; were it, this is an error, not an empty answer
        raise CommandError(f"no merchant {merchant_id!r}")
    return merchant


async def _merchants_create(args: argparse.Namespace, store: SQLStore) -> dict[str, Any]:
    merchant, secret = await store.create_merchant(args.name, _amount(args.balance, "--balance"))
    return {"merchant_id": merchant.merchant_id, "secret_key": secret, "name": merchant.name,
            "balance": usd(merchant.balance_nanos)}


async def _merchants_credit(args: argparse.Namespace, store: SQLStore) -> dict[str, Any]:
    from .billing.balances import transfer_id
    from .cli_billing import open_balances
    nanos = _amount(args.amount, "--amount")
    merchant = await _merchant_of(store, args.secret_key)
    async with open_balances(args, store) as balances:
        try:
            await balances.fund(merchant.merchant_id, nanos, transfer_id(f"funding:{merchant.merchant_id}",
                                                                        args.idempotency_key))
        except GatewayError as exc:  # a bad --idempotency-key, or one another funding used
            raise CommandError(exc.message) from None
    return _merchant_json(await _merchant(store, merchant.merchant_id))


def _ledger_verify(args: argparse.Namespace) -> int:
    """Prints {"accounts", "transfers", "sum_nanos", "ok"}; what is wrong goes to stderr, and the exit is 1."""
    from .billing.reconcile import verify

    async def go() -> dict[str, Any]:
        store = open_store(_settings(args).database_url)
        await store.open()
        try:
            return await verify(store.db)
        finally:
            await store.close()
    report = asyncio.run(go())
    problems = report.pop("problems")
    _print(report)
    for problem in problems:
        print(f"edge-proxy: ledger: {problem}", file=sys.stderr)
    return 0 if report["ok"] else 1


async def _merchants_show(args: argparse.Namespace, store: SQLStore) -> dict[str, Any]:
    return _merchant_json(await _merchant_of(store, args.secret_key))


def _merchant_json(merchant: Merchant) -> dict[str, Any]:
    return {"merchant_id": merchant.merchant_id, "name": merchant.name, "balance": usd(merchant.balance_nanos),
            "created_at": merchant.created_at}


async def _balances_reconcile(args: argparse.Namespace, store: SQLStore) -> dict[str, Any]:
    from .billing.holds import RedisHolds
    from .billing.reconcile import reconcile
    settings = _settings(args)
    if not settings.redis_url:
        return await reconcile(store.db)
    from .store.redis_client import open_redis
    client = open_redis(settings.redis_url, 5)
    try:
        return await reconcile(store.db, RedisHolds(client, store.db, settings.region, settings.region_lease_ttl))
    finally:
        await client.aclose()


def _tokens_create(args: argparse.Namespace) -> int:
    print(encode_forward_token(args.secret_key, args.customer_id, args.meter_slug, args.provider_key))
    return 0


def _print(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


if __name__ == "__main__":
    sys.exit(main())
