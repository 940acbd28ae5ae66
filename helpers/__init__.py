"""Trainyard's one shared package. Kept empty so `import helpers.x` stays cheap (invoke --list cold start)."""
