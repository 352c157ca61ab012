# The compiled header filters' API (built from _fastpath/headers.pyx): the same as their twin, _headers_py.
from collections.abc import Iterable

from .upstream import HeaderBlock

def request_headers(items: Iterable[tuple[str, str]], key_header: bytes, key: str | None, *,
                    managed: bool = False) -> HeaderBlock: ...
def response_headers(raw: Iterable[tuple[bytes, bytes]], *, managed: bool = False) -> list[tuple[str, str]]: ...
