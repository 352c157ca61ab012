"""Billing: who pays, how much (meters), balances with reservations, and spend keys."""
