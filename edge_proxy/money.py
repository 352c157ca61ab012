"""Money is integer nano-dollars inside the gateway and a decimal USD string at its edges."""
from __future__ import annotations

import re
from decimal import Context, Decimal, Inexact

NANOS_PER_USD = 1_000_000_000
# A decimal amount in ASCII: digits with an optional point and exponent. Decimal() alone also takes other scripts'
# digits ("١٢" is 12), underscores ("1_000") and NaN or infinity, none of which is an amount anyone means to send.
_AMOUNT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Scaling to nanos must be exact: under the default context (28 digits, exponents within 999,999) a product is
# rounded ("1.0000000000000000000000000001" became 1 USD), flushed to zero ("1e-999999999"), or raised as
# decimal.Overflow, which is not a ValueError ("1e999999999" was a 500). Rounding away a non-zero digit traps.
_EXACT = Context(prec=64, traps=[Inexact])


def parse_usd(text: str | int | float | Decimal, what: str = "amount") -> int:
    """A decimal USD amount as nano-dollars. Refuses negatives, NaN and more than nine decimals."""
    raw = str(text).strip()
    if not _AMOUNT.fullmatch(raw):
        raise ValueError(f"{what}: {text!r} is not a decimal USD amount")
    value = Decimal(raw)
    if value < 0:
        raise ValueError(f"{what}: must be a non-negative decimal USD amount")
    if value and value.adjusted() > 12:  # 10**13 USD or more: past 10**21 nanos, and kept off the arithmetic
        raise ValueError(f"{what}: too large")
    try:
        nanos = _EXACT.multiply(value, NANOS_PER_USD)
    except Inexact:  # a digit below 1e-9 of a non-zero amount
        raise ValueError(f"{what}: at most nine decimal places (nano-dollars)") from None
    if nanos != nanos.to_integral_value():
        raise ValueError(f"{what}: at most nine decimal places (nano-dollars)")
    if nanos > 10**21:
        raise ValueError(f"{what}: too large")
    return int(nanos)


def usd(nanos: int) -> str:
    """Nano-dollars as a decimal USD string, exact: 1_500_000_000 -> "1.5", 0 -> "0"."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")
