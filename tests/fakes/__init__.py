"""Test doubles for external services. Only tests and benchmarks use them; the app never does."""
