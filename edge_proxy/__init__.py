"""edge_proxy: a self-hostable AI gateway that speaks Lava Gateway's wire protocol."""

__version__ = "0.1.0"
