"""Settings from the environment (``BOUGHS_*``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOUGHS_", extra="ignore")

    database_url: str = Field(
        default=f"sqlite+aiosqlite:///{DEFAULT_DATA_DIR / 'boughs.sqlite3'}",
        description="SQLAlchemy URL; postgresql://… is accepted and driven by psycopg.",
    )
    broker_url: str | None = Field(
        default=None,
        description="redis://… or amqp://…; unset runs jobs in the serving process.",
    )
    secret_key: str = Field(
        default="change-me-in-production-boughs-secret-key",
        description="Signs sessions and derives the key that encrypts subscriber secrets.",
    )
    queue_name: str = Field(
        default="boughs",
        description="Broker queue; give each installation sharing a broker its own.",
    )
    embedded_worker: bool = Field(
        default=True, description="Run job workers inside `boughs serve` when no broker is set."
    )
    scheduler_interval_seconds: float = 15.0
    job_stale_after_seconds: float = 120.0
    log_level: str = "INFO"
    sql_echo: bool = False


@lru_cache
def get_settings() -> Settings:
    return Settings()
