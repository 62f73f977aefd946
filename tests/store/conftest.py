"""Store fixtures: a throwaway PostgreSQL cluster (see tests/support/postgres.py)."""

from tests.support.postgres import postgres_cluster, postgres_database, postgres_url

__all__ = ["postgres_cluster", "postgres_database", "postgres_url"]
