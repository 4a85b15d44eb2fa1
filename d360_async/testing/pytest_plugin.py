"""pytest fixtures for users' tests (placeholder until the fixtures land)."""
