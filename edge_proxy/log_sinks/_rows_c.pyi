# The compiled row encoding's API (built from _fastpath/log_rows.pyx): the same as its twin, _rows_py.
from collections.abc import Iterable
from typing import Any

from ..metering.record import RequestRecord

def sqlite_params(records: Iterable[RequestRecord]) -> list[Any]: ...
