#!/usr/bin/env python3
"""Fuzzes the API with Schemathesis against a fresh orderly-local, from docs/openapi.json.

Run by scripts/test after `cargo build` (with the Python of .tools/fuzz). Starts
target/debug/orderly-local on a free loopback port over a temporary data directory, seeds a
product, a customer and an order, then runs `schemathesis run` three times (anonymous, as the
customer, as the admin) over every operation with the checks the API promises: no server error,
no undocumented status code, no response breaking its schema or content type, nothing slower
than the request timeout (a hang). Bounded by examples per operation and a time budget.
Prints Schemathesis's report; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "target" / "debug" / "orderly-local"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SCHEMA = ROOT / "docs" / "openapi.json"
ADMIN = ("admin", "fuzz-admin-password-1")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = os.environ.get("ORDERLY_FUZZ_EXAMPLES", "25")
MAX_TIME = os.environ.get("ORDERLY_FUZZ_SECONDS", "100")  # per run, three runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def seed(base: str) -> tuple[str, str]:
    """A product, a customer with an order: (admin token, customer token)."""
    admin = call(base, "POST", "/auth/login", {"username": ADMIN[0], "password": ADMIN[1]})["access_token"]
    product = call(base, "POST", "/products", {"name": "Fuzz Kettle", "price_cents": 2500, "stock": 1000,
                                                "category": "kitchen", "low_stock_threshold": 5}, admin)
    address = {"line1": "1 Test Street", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"}
    call(base, "POST", "/customers", {"name": "Fuzz Customer", "email": "fuzz@example.com",
                                      "password": "fuzz-password-1", "address": address})
    customer = call(base, "POST", "/auth/login", {"email": "fuzz@example.com", "password": "fuzz-password-1"})["access_token"]
    call(base, "POST", "/orders", {"items": [{"product_id": product["id"], "quantity": 1}]}, customer)
    return admin, customer


def main() -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "ORDERLY_ADDR": f"127.0.0.1:{port}", "ORDERLY_DATA_DIR": data,
               "ORDERLY_ADMIN_USERNAME": ADMIN[0], "ORDERLY_ADMIN_PASSWORD": ADMIN[1], "RUST_LOG": "warn",
               # Fuzzing signs up and fails logins by the hundred: keep the limits out of its way.
               "SIGN_UPS_PER_ADDRESS": "1000000", "LOGIN_FAILURES_PER_ADDRESS": "1000000",
               "LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS": "1000000", "LOGIN_FAILURES_PER_ACCOUNT": "1000000"}
        env.pop("ORDERLY_STORE", None)
        log = open(Path(data) / "server.log", "w")
        server = subprocess.Popen([str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT)
        failed = []
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            admin, customer = seed(base)
            for who, token in [("anonymous", None), ("customer", customer), ("admin", admin)]:
                print(f"== schemathesis as {who}", flush=True)
                command = [str(SCHEMATHESIS), "run", str(SCHEMA), "--url", base, "--checks", CHECKS,
                           "--max-examples", MAX_EXAMPLES, "--max-time", MAX_TIME, "--request-timeout", "10",
                           # One worker: hypothesis parses sources with `ast`, which fails
                           # ("AST constructor recursion depth mismatch") when threads race.
                           "--workers", "1", "--seed", "1", "--no-color",
                           "--phases", "examples,coverage,fuzzing,stateful"]
                if token:
                    # Logging out (here or everywhere) or a password change would end the very
                    # token the rest of the run uses; the anonymous run still reaches them.
                    command += ["--header", f"Authorization: Bearer {token}"]
                    for path in ["/auth/logout", "/auth/logout-everywhere", "/auth/password"]:
                        command += ["--exclude-path", path]
                if subprocess.run(command, cwd=data).returncode != 0:
                    failed.append(who)
        finally:
            server.terminate()
            server.wait(timeout=15)
        if server.returncode not in (0, -15):
            failed.append(f"the server exited with {server.returncode}")
        if failed:
            print("--- server log tail ---\n" + (Path(data) / "server.log").read_text()[-3000:])
    print(f"schemathesis: {'failed: ' + ', '.join(failed) if failed else 'no failures'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
