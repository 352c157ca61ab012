"""Lava's REST resources, authorized by the merchant's secret key, in the shapes the Lava SDK reads."""
