"""The PostgreSQL fixtures, shared by this folder's modules: one server for the session."""
from postgres_server import pg_url, postgres  # noqa: F401 (fixtures)
