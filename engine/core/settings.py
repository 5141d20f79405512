"""Every setting, declared once with its XIANGFLOW_ prefix and default."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SQLITE = f"sqlite:///{ROOT / 'instance' / 'xiangflow.sqlite3'}"


def database_url() -> str:
    """XIANGFLOW_DATABASE_URL, else DATABASE_URL, else the embedded SQLite file."""
    url = os.environ.get("XIANGFLOW_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_SQLITE
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    elif url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    return url


def environment() -> str:
    return os.environ.get("XIANGFLOW_ENV", "development")


def is_production() -> bool:
    return environment() == "production"


WORKFLOWS_DIR = ROOT / "workflows"
FORMS_DIR = ROOT / "forms"
REGIONS_CSV = Path(os.environ.get("XIANGFLOW_REGIONS_CSV", str(ROOT / "data" / "regions" / "seed_counties.csv")))
STORAGE_DIR = Path(os.environ.get("XIANGFLOW_STORAGE_DIR", str(ROOT / "instance" / "attachments")))
# live workflows kept per process after a commit (engine/runtime/live_cache.py); 0 turns the cache off
LIVE_WORKFLOW_CACHE = int(os.environ.get("XIANGFLOW_LIVE_WORKFLOW_CACHE", "256"))
