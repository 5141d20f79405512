"""A serving process's heap, settled once the app is built, so garbage collection stays short under load.

CPython's cycle collector walks every tracked object of the generation it collects. After ``create_app``
a process holds about 180,000 of them (modules, SQLAlchemy's mappers, SpiffWorkflow's parsed
specs, compiled templates), and a request's garbage sooner or later triggers a full (generation 2)
collection that walks them all: measured on the 1 M-case bench database, 40-400 ms per pass depending
on the machine's load, landing on whichever request happened to allocate at that moment. That was
the inbox's p95 at 50 users (bench/inbox_request.py showed single requests of 300+ ms whose SQL took
15 ms). ``gc.freeze()`` moves everything alive at that point into a permanent generation the collector
skips; those objects are still freed by reference counting as before, only cycles among them are no
longer looked for. Later objects (each request's rows, the live-workflow cache's trees) are collected
as always, so a cached workflow that is evicted is still reclaimed.
"""

from __future__ import annotations

import gc

from flask import Flask


def settle(app: Flask) -> int:
    """Compile the app's page templates, collect, and freeze what is alive; the number of frozen objects.

    Call once per process, after the app is built and before it serves (wsgi.py: each gunicorn worker,
    the development server, the timer workers)."""
    env = app.jinja_env
    for name in env.list_templates(filter_func=lambda n: n.endswith(".html")):
        env.get_template(name)  # compiled now, into the frozen heap, not on some user's first request
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
