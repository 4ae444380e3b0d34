"""Nuke's nukescripts package in the test double: only what HOSTS.md documents (panels)."""
from . import panels  # noqa: F401
