"""The production profile: gunicorn with several worker processes serves the app on the test's database,
answers /healthz (200 while the database answers, 503 when it cannot be reached) and keeps a login
across requests that land on any of its workers (the session lives in the signed cookie, not in a process)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from engine.bootstrap import DEMO_PASSWORD
from engine.core.settings import ROOT

GUNICORN = Path(sys.executable).with_name("gunicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(database_url: str, tmp_path: Path, workers: int = 2):
    """Start gunicorn as `make serve` does (scheduler off, shared secret); (process, base url)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIANGFLOW_") and k != "DATABASE_URL"}
    env.update(XIANGFLOW_DATABASE_URL=database_url, XIANGFLOW_SCHEDULER="0", XIANGFLOW_SECRET_KEY="t" * 64,
               XIANGFLOW_STORAGE_DIR=str(tmp_path / "attachments"), PYTHONPATH=str(ROOT))
    log = tmp_path / f"gunicorn-{port}.log"
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([str(GUNICORN), "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                                 "--timeout", "60", "wsgi:app"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=out)
    proc.log = log
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _get(opener, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def _wait_until_serving(proc: subprocess.Popen, base: str) -> tuple[int, str]:
    opener = urllib.request.build_opener()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}: {proc.log.read_text()[-2000:]}")
        try:
            return _get(opener, base + "/healthz")
        except (ConnectionError, urllib.error.URLError):
            time.sleep(0.3)
    pytest.fail("gunicorn did not answer /healthz within 90 s")


def test_gunicorn_with_two_workers_serves_health_login_and_a_logged_in_inbox(db, tmp_path):
    proc, base = _serve(db.url, tmp_path)
    try:
        status, body = _wait_until_serving(proc, base)
        assert status == 200
        assert json.loads(body) == {"status": "ok", "database": "ok"}

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        status, body = _get(opener, base + "/login")
        assert status == 200 and 'name="password"' in body
        status, body = _get(opener, base + "/api/v1/session",
                            json.dumps({"username": "demo_village", "password": DEMO_PASSWORD}).encode(),
                            {"Content-Type": "application/json"})
        assert status == 200, body
        assert json.loads(body)["username"] == "demo_village"
        # several requests: the two workers share nothing but the secret and the database
        for _ in range(6):
            status, body = _get(opener, base + "/")
            assert status == 200 and "待办" in body and 'name="password"' not in body
    finally:
        _stop(proc)


def test_health_answers_503_when_the_database_cannot_be_reached(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    proc, base = _serve(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/nothing", tmp_path, workers=1)
    try:
        status, body = _wait_until_serving(proc, base)
        assert status == 503
        assert json.loads(body)["database"] == "unreachable"
    finally:
        _stop(proc)
