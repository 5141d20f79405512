"""One Flask app per pytest process, pointed at each test's database in turn.

``create_app`` spends most of its 0.15–0.4 s compiling Werkzeug's URL rules (127 of them), and each new app
compiles its Jinja templates again on first render. The web tests' ``app`` and the browser tests' live server
therefore share one app built once per process (``SharedApp``) and re-pointed per test by ``serve(config)``,
which does what ``create_app(config)`` does with a config: the config made afresh by ``web.config.load_config``
(so a setting or environment variable a test changed counts, and a change a test made to ``app.config`` does not
leak into the next), then ``web.bind_state`` — a new engine on the test's database, a new login limiter and new
background runners. What is left shared is what create_app builds from code alone: blueprints, URL map, error
handlers, filters, compiled templates.

An app with a scheduler is not shared (create_app registers the scheduler only for such a config); tests
that need other settings than the defaults still get an app of their own from ``app_factory``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

# what the shared app is built with: no scheduler (create_app registers it only when the config asks for it),
# and an in-memory SQLite URL, never connected to, until serve() binds it to a test's database
BUILD_CONFIG = {"XIANGFLOW_SCHEDULER": False, "XIANGFLOW_DATABASE_URL": "sqlite://"}


class SharedApp:
    def __init__(self) -> None:
        self._app: Flask | None = None
        self._built_config: dict[str, Any] = {}

    def serve(self, config: dict[str, Any]) -> Flask:
        """The shared app, configured as ``create_app(config)`` would configure a new one, on a new engine."""
        from web import bind_state, create_app
        from web.config import load_config

        if config.get("XIANGFLOW_SCHEDULER", True):
            raise ValueError("the shared app serves configs with XIANGFLOW_SCHEDULER=False only")
        if self._app is None:
            self._app = create_app(BUILD_CONFIG)
            self._built_config = dict(self._app.config)  # Flask's and the extensions' defaults + BUILD_CONFIG
        app = self._app
        app.extensions["xiangflow"].engine.dispose()
        app.config.clear()
        app.config.update(self._built_config)
        app.config.update(load_config(config))
        bind_state(app)
        return app

    def close(self) -> None:
        if self._app is not None:
            self._app.extensions["xiangflow"].engine.dispose()
