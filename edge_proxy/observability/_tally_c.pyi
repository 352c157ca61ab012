# The compiled tally's API (built from _fastpath/tally.pyx): the same as its twin, _tally_py.
from typing import Any

from ._tally_py import BUCKETS as BUCKETS
from ._tally_py import Group as Group
from ._tally_py import Key as Key
from ._tally_py import Overhead as Overhead

def tally(finished: list[tuple[Any, float]]) -> tuple[dict[Key, Group], Overhead]: ...
