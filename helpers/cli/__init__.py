"""Invoke task modules, one per namespace. Thin: read flags, call a backend verb. Heavy imports stay inside tasks."""
