"""Store fixtures: the PostgreSQL ones (`postgres_cluster`, `postgres_url`,
`postgres_database`) come from tests/conftest.py, so every test directory shares one
session cluster (tests/support/postgres.py)."""
