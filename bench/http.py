"""XiangFlow over HTTP at province scale: the production profile under N concurrent users, at 10 k and at N cases.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/xf_scale \\
        .venv/bin/python bench/http.py --cases 1000000 --users 50 --seconds 60

For each scale (``--small``, default 10,000, then ``--cases``) it seeds a PostgreSQL database named after
the configured one (``xf_scale_http_10000``, ``xf_scale_http_1000000``; created if missing) with that many
四步法 exit cases (bench/seed.py: the five seed counties' 1,207 villages, a tenth open, COPY then ANALYZE;
the big one is reused when it holds exactly that seeding, unless ``--reseed``), reads it into the page cache
(pg_prewarm; ``--cold`` skips that and measures the disk too), starts the production
profile on a free loopback port (gunicorn with ``--web-workers`` processes, one timer worker, the
scheduler tick off) and drives it with ``--users`` simulated users of every level (village cadres,
township officers, county departments, county leaders; each its own account in its own region). Each
user logs in once, then repeats: open the inbox, search by name, and — if the inbox holds a step the user
can decide — open the task, complete it (approve, through the JSON API) and open its case; otherwise open
a case from the inbox. Between requests a user reads for a random time (exponential, mean ``--think``
seconds, default 10; 0 = no pause). The first ``--warmup`` seconds are not counted. On the big database
the same users then run one at a time without pauses (concurrency 1) for the complete-cost comparison.

Prints p50/p95/p99 and throughput per operation and scale; the last line is one JSON object
``{"users": N, "scales": {"10000": {"inbox": {"p50_ms", "p95_ms", "p99_ms", "per_s", "count"}, …}, …}}``
(the big scale also has ``"one_user"`` with the concurrency-1 figures and ``"seed_s"``). Loopback only;
every process it starts is stopped before it exits, also on Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _outside_bench() -> list[str]:
    return [p for p in sys.path if Path(p or ".").resolve() != HERE]


if __name__ == "http":
    # Any script run as `python bench/<name>.py` has bench/ first on its import path, so its `import http`
    # (or a library's) finds this file. Hand it the standard library's package instead: the import system
    # returns whatever sits in sys.modules under the name once this module has run.
    import importlib

    _path = sys.path[:]
    sys.path[:] = _outside_bench()
    del sys.modules["http"]
    try:
        sys.modules["http"] = importlib.import_module("http")
    finally:
        sys.path[:] = _path
else:
    sys.path[:] = _outside_bench()  # this script's own `import http` is the standard library's
    sys.path.insert(0, str(ROOT))
    if __name__ == "__main__":
        from bench.http_load import main

        main()

