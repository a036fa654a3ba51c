"""Helpers for the harness's own tests: fixtures too big for a test file, and tools they drive."""
