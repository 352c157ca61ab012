"""Requests to URLs a tenant chose (webhooks): the operator's policy, the address checks, the guarded client.

| module | what |
|---|---|
| `addresses.py` | which IP addresses may be reached; what an IP literal in any notation means |
| `policy.py` | the operator's policy and the URL checks made at registration and before each delivery |
| `client.py` | the guarded client: resolve, check, connect to the checked address, bounded in every way |
"""
from __future__ import annotations

from .addresses import MalformedHost, parse_ip_literal, refusal
from .client import GuardedClient, Outcome, checked_address, system_resolver
from .policy import MAX_URL_BYTES, Destination, OutboundPolicy, check_url, parse_allow_list

__all__ = ["MAX_URL_BYTES", "Destination", "GuardedClient", "MalformedHost", "OutboundPolicy", "Outcome",
           "check_url", "checked_address", "parse_allow_list", "parse_ip_literal", "refusal", "system_resolver"]
