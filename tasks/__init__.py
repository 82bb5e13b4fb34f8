"""Reusable tasks, one module per external system, each behind a small interface."""
