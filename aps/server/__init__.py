"""The HTTP gateway: FastAPI routes in front of one Gateway (aps.server.gateway)."""
from aps.server.app import create_app
from aps.server.config import ServerConfig, load_config

__all__ = ["ServerConfig", "create_app", "load_config"]
