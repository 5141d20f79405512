"""Flask configuration from the XIANGFLOW_ settings; production refuses unsafe defaults."""

from __future__ import annotations

import os
import secrets

from engine.core import settings


class ConfigError(RuntimeError):
    pass


def load_config(overrides: dict | None = None) -> dict:
    production = settings.is_production()
    secret = os.environ.get("XIANGFLOW_SECRET_KEY")
    if production and not secret:
        raise ConfigError("XIANGFLOW_SECRET_KEY must be set when XIANGFLOW_ENV=production")
    config = {
        "XIANGFLOW_ENV": settings.environment(),
        "XIANGFLOW_DATABASE_URL": settings.database_url(),
        "XIANGFLOW_SCHEDULER": os.environ.get("XIANGFLOW_SCHEDULER", "1") == "1",
        "XIANGFLOW_TIMER_TICK_SECONDS": int(os.environ.get("XIANGFLOW_TIMER_TICK_SECONDS", "30")),
        "XIANGFLOW_LOGIN_MAX_FAILURES": int(os.environ.get("XIANGFLOW_LOGIN_MAX_FAILURES", "5")),
        "XIANGFLOW_LOGIN_WINDOW_SECONDS": int(os.environ.get("XIANGFLOW_LOGIN_WINDOW_SECONDS", "300")),
        # one address (an office behind NAT) may fail this often before it is slowed down; a success relaxes it
        "XIANGFLOW_LOGIN_ADDR_MAX_FAILURES": int(os.environ.get("XIANGFLOW_LOGIN_ADDR_MAX_FAILURES", "30")),
        # a session ends after this many minutes without a request, and this many hours after login
        "XIANGFLOW_SESSION_IDLE_MINUTES": int(os.environ.get("XIANGFLOW_SESSION_IDLE_MINUTES", "120")),
        "XIANGFLOW_SESSION_MAX_HOURS": int(os.environ.get("XIANGFLOW_SESSION_MAX_HOURS", "12")),
        "XIANGFLOW_MAX_JSON_BYTES": int(os.environ.get("XIANGFLOW_MAX_JSON_BYTES", str(4 * 1024 * 1024))),
        "XIANGFLOW_MAX_JSON_DEPTH": int(os.environ.get("XIANGFLOW_MAX_JSON_DEPTH", "32")),
        # Strict-Transport-Security: on in production (served over HTTPS), off on a developer's http://
        "XIANGFLOW_HSTS": os.environ.get("XIANGFLOW_HSTS", "1" if production else "0") == "1",
        "XIANGFLOW_REFUSE_DEMO": production,
        "XIANGFLOW_STORAGE_DIR": str(settings.STORAGE_DIR),
        "XIANGFLOW_DUE_SOON_HOURS": int(os.environ.get("XIANGFLOW_DUE_SOON_HOURS", "48")),
        "XIANGFLOW_SMTP_HOST": os.environ.get("XIANGFLOW_SMTP_HOST", ""),
        "XIANGFLOW_SMTP_PORT": int(os.environ.get("XIANGFLOW_SMTP_PORT", "25")),
        "XIANGFLOW_SMTP_SENDER": os.environ.get("XIANGFLOW_SMTP_SENDER", "xiangflow@localhost"),
        "XIANGFLOW_SMTP_USERNAME": os.environ.get("XIANGFLOW_SMTP_USERNAME") or None,
        "XIANGFLOW_SMTP_PASSWORD": os.environ.get("XIANGFLOW_SMTP_PASSWORD") or None,
        "XIANGFLOW_SMTP_TLS": os.environ.get("XIANGFLOW_SMTP_TLS", "0") == "1",
        "XIANGFLOW_CLOCK": None,
        "SECRET_KEY": secret or secrets.token_hex(32),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "MAX_CONTENT_LENGTH": 12 * 1024 * 1024,  # attachments up to 10 MB plus form overhead
        "WTF_CSRF_TIME_LIMIT": None,
    }
    config.update(overrides or {})
    return config
