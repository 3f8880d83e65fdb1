"""Sindri Console: control plane for a fleet of Sindri cloud development environments."""

__version__ = "0.1.0"
