"""12345 environmental complaint triage service."""

__version__ = "0.1.0"
