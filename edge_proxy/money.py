"""Money is integer nano-dollars inside the gateway and a decimal USD string at its edges."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

NANOS_PER_USD = 1_000_000_000


def parse_usd(text: str | int | float | Decimal, what: str = "amount") -> int:
    """A decimal USD amount as nano-dollars. Refuses negatives, NaN and more than nine decimals."""
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"{what}: {text!r} is not a decimal USD amount") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{what}: must be a non-negative decimal USD amount")
    nanos = value * NANOS_PER_USD
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
