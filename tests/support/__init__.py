"""Shared helpers for tests: tiny offline models and the like."""
