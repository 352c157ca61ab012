"""Providers are data: catalogue.toml lists them, catalogue.py answers where a request may go."""
from .catalogue import Catalogue, Origin, Provider, Target, join_forward_url

__all__ = ["Catalogue", "Origin", "Provider", "Target", "join_forward_url"]
