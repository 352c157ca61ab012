"""Metering: read usage from provider responses, price it, and log each request exactly once."""
