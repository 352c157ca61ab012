"""The providers' HTTP/1.1 client: a keep-alive pool (`pool.py`) of httptools connections (`connection.py`),
and the errors of the upstream hop (`errors.py`). See pool.py for what it does and the bounds it keeps."""
from .connection import UpstreamResponse
from .errors import (UpstreamBodyError, UpstreamBodyTooLarge, UpstreamConnectError, UpstreamError,
                     UpstreamEventTooLarge, UpstreamHeadTooLarge, UpstreamTimeout)
from .pool import HeaderBlock, UpstreamPool

__all__ = ["HeaderBlock", "UpstreamBodyError", "UpstreamBodyTooLarge", "UpstreamConnectError", "UpstreamError",
           "UpstreamEventTooLarge", "UpstreamHeadTooLarge", "UpstreamPool", "UpstreamResponse", "UpstreamTimeout"]
