"""The book opens in Jupyter: a real jupyter server lists the chapters and runs the library.

Starts ``jupyter server`` on 127.0.0.1 (random free port, a token, root = the repository),
lists ``chapters/`` through the contents API, starts a ``python3`` kernel through the kernels
API, executes code over the kernel's websocket, then deletes the kernel and stops the server.
Every wait is bounded; the server is terminated in a ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import mobilevit_edu
from mobilevit_edu.book import load_book

ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 60
KERNEL_TIMEOUT_S = 60

tornado_websocket = pytest.importorskip("tornado.websocket")
from tornado.httpclient import HTTPRequest  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jupyter")
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),  # no user config
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "MOBILEVIT_EDU_PROFILE": "ci",
    }
    cmd = [
        sys.executable, "-m", "jupyter_server",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    srv = Server(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter server exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()}")
            try:
                if srv.request("GET", "/api/status")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter server did not answer within {SERVER_START_TIMEOUT_S} s:\n"
                            f"{(tmp / 'server.log').read_text()}")
            time.sleep(0.5)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_contents_api_lists_the_chapters(server):
    status, listing = server.request("GET", "/api/contents/chapters?content=1")
    assert status == 200 and listing["type"] == "directory"
    names = {item["name"] for item in listing["content"]}
    book = load_book(ROOT)
    present = {Path(c.path).name for c in book.chapters if book.notebook(c).is_file()}
    assert "00_how_to_use.ipynb" in present
    assert present <= names
    status, nb = server.request("GET", "/api/contents/chapters/00_how_to_use.ipynb")
    assert status == 200 and nb["type"] == "notebook"
    assert nb["content"]["metadata"]["kernelspec"]["name"] == "python3"


async def _execute(server: Server, kernel_id: str, code: str) -> tuple[str, list[dict]]:
    url = server.base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    request = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
    conn = await asyncio.wait_for(tornado_websocket.websocket_connect(request), KERNEL_TIMEOUT_S)
    try:
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        await conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": session,
                       "msg_type": "execute_request", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        stdout, errors = "", []
        deadline = time.monotonic() + KERNEL_TIMEOUT_S
        while True:
            raw = await asyncio.wait_for(conn.read_message(), max(0.1, deadline - time.monotonic()))
            assert raw is not None, "the kernel websocket closed"
            if isinstance(raw, bytes):
                continue
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"]["name"] == "stdout":
                stdout += msg["content"]["text"]
            elif kind == "error":
                errors.append(msg["content"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return stdout, errors
    finally:
        conn.close()


def test_kernel_runs_the_library(server):
    status, kernel = server.request("POST", "/api/kernels", {"name": "python3"})
    assert status == 201
    try:
        code = ("import os, sys, mobilevit_edu\nprint(mobilevit_edu.__version__)\n"
                "print(sys.executable)\nprint(os.environ.get('MOBILEVIT_EDU_PROFILE'))")
        stdout, errors = asyncio.run(_execute(server, kernel["id"], code))
        assert not errors, errors
        assert stdout.splitlines() == [mobilevit_edu.__version__, sys.executable, "ci"]
    finally:
        status, _ = server.request("DELETE", f"/api/kernels/{kernel['id']}")
        assert status == 204
    assert all(k["id"] != kernel["id"] for k in server.request("GET", "/api/kernels")[1])
