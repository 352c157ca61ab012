"""What counts as a served request in the locust scenarios (bench/locustfile.py, bench/locustfile_regions.py)."""
from __future__ import annotations

from typing import Any


def judge(response: Any, stream: bool) -> None:
    """Mark a locust response (opened with catch_response=True) failed unless it is 200 and, for a stream, ends
    with `data: [DONE]`."""
    if response.status_code != 200:
        response.failure(f"{response.status_code}: {(response.text or '')[:200]}")
    elif stream and not (response.content or b"").rstrip().endswith(b"data: [DONE]"):
        response.failure("stream did not end with data: [DONE]")
    else:
        response.success()
