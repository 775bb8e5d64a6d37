#!/usr/bin/env python3
"""Invokes the Lambda binaries with the API Gateway events in events/, as Lambda functions.

Run by scripts/test after `cargo build --workspace --all-targets`, with DynamoDB Local up:

    ORDERLY_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:PORT .tools/py/bin/python scripts/lambda_events_test.py

What it does:
1. Creates a fresh set of tables (names prefixed `lambda-<random>-`) with the project's own code:
   `target/debug/orderly-local` with ORDERLY_STORE=dynamodb creates missing tables at start-up.
2. Starts `cargo lambda watch --only-lambda-apis` on 127.0.0.1 and a free port: the Lambda
   runtime API and invoke API, without cargo-lambda building or starting anything.
3. Starts the prebuilt target/debug/<function> binaries with AWS_LAMBDA_RUNTIME_API pointing at
   it (http://127.0.0.1:PORT/.rt/<function>), so they run the real lambda_runtime loop against
   the fresh tables. (Plain `cargo lambda watch` would `cargo run` each function itself: a
   rebuild under the cargo lock, and a restart whenever someone edits a source file.)
4. For every entry of events/manifest.json, in order: applies its substitutions to the event
   text, runs `cargo lambda invoke ... <function> --data-file <tmp>`, checks the API Gateway
   response against the expectations, and records captures.
5. Prints one line per invocation and `N passed, M failed`; exits non-zero on any failure.
   Every event file in events/ must be invoked by the manifest: an unused one is a failure.

Every child runs in its own process group and is stopped on exit, also on failure or a signal;
every wait is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
MANIFEST = EVENTS / "manifest.json"
BIN_DIR = ROOT / "target" / "debug"
VENV_BIN = ROOT / ".tools" / "py" / "bin"

TABLES_TIMEOUT = 60  # orderly-local creating the tables
WATCH_START_TIMEOUT = 60  # cargo lambda watch opening its port (it runs `cargo metadata` first)
# One `cargo lambda invoke`, enforced here (seconds; ORDERLY_LAMBDA_TIMEOUT overrides). Not
# `cargo lambda watch --timeout`: that limit also cuts the runtime API's long poll for the next
# event, and lambda_runtime panics on the empty answer when a function idles that long.
INVOKE_TIMEOUT = int(os.environ.get("ORDERLY_LAMBDA_TIMEOUT", "30"))
STOP_TIMEOUT = 5  # a child's grace period after SIGTERM before SIGKILL
LOG_TAIL_LINES = 30

MISSING = object()


class HarnessError(Exception):
    """Setup failed: the run cannot go on."""


class Failure(Exception):
    """One invocation failed."""


class TimedOut(Failure):
    """The function did not answer in time: its execution environment is replaced."""


# ---------------------------------------------------------------- child processes


class Children:
    """Child processes, each in its own session (process group), all stopped by stop_all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.procs.append((name, proc))
        return proc

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_text(self, name: str) -> str:
        try:
            return self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        tail = self.log_text(name).splitlines()[-lines:]
        return "\n".join(f"    | {line}" for line in tail) if tail else "    | (empty log)"

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        """SIGTERM to the process group, then SIGKILL to whatever is left of it.

        The leader is not reaped until the end (waitid with WNOWAIT), so its pid, which is the
        group id, cannot be reused by an unrelated process while we signal the group.
        """
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self) -> None:
        while self.procs:
            _, proc = self.procs.pop()
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- environment and setup


def base_env(endpoint: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    # zig (for cargo-lambda) is found with `python3 -m ziglang`: the venv must come first.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    env.setdefault("AWS_REGION", "us-east-1")
    env.setdefault("AWS_ACCESS_KEY_ID", "test")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["CUSTOMERS_TABLE"] = f"{prefix}customers"
    env["PRODUCTS_TABLE"] = f"{prefix}products"
    env["ORDERS_TABLE"] = f"{prefix}orders"
    # A fresh signing secret per run: the functions refuse to start without one.
    env["JWT_SECRET"] = secrets.token_urlsafe(48)
    env.pop("JWT_PREVIOUS_SECRET", None)
    env.setdefault("RUST_BACKTRACE", "1")
    return env


def require_file(path: Path, hint: str) -> None:
    if not path.is_file():
        raise HarnessError(f"{path} is missing: {hint}")


def create_tables(children: Children, env: dict[str, str], setup: dict[str, Any]) -> None:
    """Runs orderly-local over DynamoDB until it says it listens: by then the tables exist, and
    the manifest's admin account (setup.admin) too."""
    name = "orderly-local"
    local_env = {**env, "ORDERLY_STORE": "dynamodb", "ORDERLY_ADDR": "127.0.0.1:0", "NO_COLOR": "1"}
    local_env["ORDERLY_DATA_DIR"] = str(children.log_dir / "orderly-local-data")
    admin = setup.get("admin")
    if admin:
        local_env["ORDERLY_ADMIN_USERNAME"] = admin["username"]
        local_env["ORDERLY_ADMIN_PASSWORD"] = admin["password"]
    proc = children.start(name, [str(BIN_DIR / "orderly-local")], local_env)
    deadline = time.monotonic() + TABLES_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if "orderly-local listening" in children.log_text(name):
                return
            if proc.poll() is not None:
                raise HarnessError(
                    f"orderly-local exited with status {proc.returncode} before creating the tables:\n"
                    + children.log_tail(name)
                )
            time.sleep(0.1)
        raise HarnessError(f"orderly-local did not create the tables within {TABLES_TIMEOUT} s:\n" + children.log_tail(name))
    finally:
        children.stop(proc)


def start_watch(children: Children, env: dict[str, str]) -> int:
    """Starts `cargo lambda watch --only-lambda-apis` on 127.0.0.1 and a free port; returns the port."""
    last_error = ""
    for attempt in range(3):  # a free port can be taken by someone else before we bind it
        port = free_port()
        name = f"cargo-lambda-watch-{attempt}"
        proc = children.start(
            name,
            [
                "cargo", "lambda", "watch",
                "--only-lambda-apis",
                "--invoke-address", "127.0.0.1",
                "--invoke-port", str(port),
                "--color", "never",
            ],
            env,
        )
        deadline = time.monotonic() + WATCH_START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if port_open(port):
                return port
            time.sleep(0.2)
        if proc.poll() is None:
            children.stop(proc)
            raise HarnessError(
                f"cargo lambda watch did not open port {port} within {WATCH_START_TIMEOUT} s:\n" + children.log_tail(name)
            )
        last_error = f"cargo lambda watch exited with status {proc.returncode}:\n" + children.log_tail(name)
    raise HarnessError(last_error)


class Functions:
    """The prebuilt function binaries, each a Lambda execution environment polling the watch server."""

    def __init__(self, children: Children, env: dict[str, str], port: int) -> None:
        self.children = children
        self.env = env
        self.port = port
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}

    def start(self, function: str) -> None:
        binary = BIN_DIR / function
        require_file(binary, "build it with `cargo build --workspace --all-targets`")
        self.starts[function] = self.starts.get(function, 0) + 1
        env = {
            **self.env,
            "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.port}/.rt/{function}",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{self.starts[function]}",
            "NO_COLOR": "1",
        }
        self.procs[function] = self.children.start(function, [str(binary)], env)

    def ensure_running(self, function: str) -> str | None:
        """Starts the function if needed; returns a note when a previous instance had died."""
        proc = self.procs.get(function)
        if proc is None:
            self.start(function)
            return None
        if proc.poll() is None:
            return None
        note = f"{function} had exited with status {proc.returncode}; restarted it. Its log:\n" + self.children.log_tail(function)
        self.start(function)
        return note

    def check_alive(self, function: str) -> None:
        proc = self.procs[function]
        if proc.poll() is not None:
            raise HarnessError(f"{function} exited with status {proc.returncode} at start-up:\n" + self.children.log_tail(function))


def delete_tables(env: dict[str, str], prefix: str) -> None:
    """Best effort: drops every table of this run (whatever tables the code created), so an
    endpoint that outlives the run keeps nothing of it."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        return
    try:
        client = boto3.client(
            "dynamodb",
            endpoint_url=env["AWS_ENDPOINT_URL_DYNAMODB"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
        )
        names = [n for page in client.get_paginator("list_tables").paginate() for n in page["TableNames"]]
        for name in names:
            if name.startswith(prefix):
                try:
                    client.delete_table(TableName=name)
                except Exception:  # noqa: BLE001 - already gone: nothing to clean
                    pass
    except Exception:  # noqa: BLE001
        pass


# ---------------------------------------------------------------- expectations


def lookup(value: Any, path: str) -> Any:
    """`items.0.id` in a JSON value; "" is the value itself; MISSING when absent."""
    if path == "":
        return value
    for part in path.split("."):
        if isinstance(value, dict):
            if part not in value:
                return MISSING
            value = value[part]
        elif isinstance(value, list):
            try:
                index = int(part)
            except ValueError:
                return MISSING
            if not -len(value) <= index < len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def resolve(expected: Any, captures: dict[str, Any]) -> Any:
    if isinstance(expected, dict) and set(expected) == {"$captured"}:
        name = expected["$captured"]
        if name not in captures:
            raise Failure(f"nothing was captured under {name!r} (an earlier invocation failed?)")
        return captures[name]
    return expected


def same(expected: Any, actual: Any) -> bool:
    # JSON-wise equality: 1 == 1.0 is fine, but True is not 1.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return expected == actual


def show(value: Any) -> str:
    return "<absent>" if value is MISSING else json.dumps(value, ensure_ascii=False)


class Response:
    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise Failure(f"the function returned {show(raw)[:300]}, not an object")
        self.raw = raw
        self.status = raw.get("statusCode")
        headers: dict[str, str] = {}
        for name, values in (raw.get("multiValueHeaders") or {}).items():
            if isinstance(values, list) and values:
                headers[name.lower()] = ", ".join(str(v) for v in values)
        for name, value in (raw.get("headers") or {}).items():
            headers[name.lower()] = str(value)
        self.headers = headers
        body = raw.get("body")
        if body is None:
            body = ""
        if raw.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", errors="replace")
        self.body_text: str = body
        self._json: Any = MISSING

    def json(self) -> Any:
        if self._json is MISSING:
            try:
                self._json = json.loads(self.body_text)
            except ValueError as err:
                raise Failure(f"the body is not JSON ({err}): {self.body_text[:300]!r}") from None
        return self._json


def check(expect: dict[str, Any], response: Response, captures: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    want_status = expect.get("status")
    if want_status is not None and response.status != want_status:
        problems.append(f"status {response.status}, expected {want_status}")
    if "content_type" in expect:
        actual = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if actual != expect["content_type"].lower():
            problems.append(f"content-type {actual or '<absent>'!r}, expected {expect['content_type']!r}")
    for name, value in expect.get("headers", {}).items():
        actual = response.headers.get(name.lower(), MISSING)
        value = resolve(value, captures)
        if actual is MISSING or actual != str(value):
            problems.append(f"header {name}: {show(actual)}, expected {show(value)}")
    for name in expect.get("headers_present", []):
        if name.lower() not in response.headers:
            problems.append(f"header {name} is absent")
    if expect.get("body_empty") and response.body_text != "":
        problems.append(f"body should be empty, is {response.body_text[:200]!r}")
    body_checks = any(k in expect for k in ("body", "body_present", "body_absent", "body_length"))
    if body_checks:
        try:
            body = response.json()
        except Failure as err:
            problems.append(str(err))
            body = MISSING
        if body is not MISSING:
            for path, value in expect.get("body", {}).items():
                actual = lookup(body, path)
                value = resolve(value, captures)
                if actual is MISSING or not same(value, actual):
                    problems.append(f"body.{path}: {show(actual)}, expected {show(value)}")
            for path in expect.get("body_present", []):
                if lookup(body, path) is MISSING:
                    problems.append(f"body.{path} is absent")
            for path in expect.get("body_absent", []):
                actual = lookup(body, path)
                if actual is not MISSING:
                    problems.append(f"body.{path} should be absent, is {show(actual)}")
            for path, length in expect.get("body_length", {}).items():
                actual = lookup(body, path)
                if not isinstance(actual, (list, dict, str)) or len(actual) != length:
                    size = len(actual) if isinstance(actual, (list, dict, str)) else show(actual)
                    problems.append(f"body.{path}: length {size}, expected {length}")
    for path, value in expect.get("response", {}).items():
        actual = lookup(response.raw, path)
        value = resolve(value, captures)
        if actual is MISSING or not same(value, actual):
            problems.append(f"response.{path}: {show(actual)}, expected {show(value)}")
    return problems


# ---------------------------------------------------------------- invocations


def substitute(text: str, mapping: dict[str, str], captures: dict[str, Any]) -> str:
    for placeholder, capture in mapping.items():
        if placeholder not in text:
            continue
        if capture not in captures:
            raise Failure(f"cannot substitute {placeholder!r}: nothing captured under {capture!r} (an earlier invocation failed?)")
        value = captures[capture]
        if not isinstance(value, str):
            value = json.dumps(value)
        # The placeholder sits inside JSON strings: escape the value as a JSON string's content.
        text = text.replace(placeholder, json.dumps(value)[1:-1])
    return text


def invoke(function: str, event_text: str, port: int, env: dict[str, str], tmp_dir: Path) -> Any:
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=tmp_dir, delete=False) as f:
        f.write(event_text)
        data_file = f.name
    proc = subprocess.Popen(
        [
            "cargo", "lambda", "invoke",
            "--invoke-address", "127.0.0.1",
            "--invoke-port", str(port),
            "--output-format", "json",
            "--color", "never",
            function,
            "--data-file", data_file,
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # cargo runs cargo-lambda as a child: stop the whole group
    )
    try:
        stdout, stderr = proc.communicate(timeout=INVOKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        Children.stop(proc)
        proc.communicate()
        raise TimedOut(f"no answer within {INVOKE_TIMEOUT} s") from None
    finally:
        Children.stop(proc)
        os.unlink(data_file)
    if proc.returncode != 0:
        output = (stderr.strip() + "\n" + stdout.strip()).strip()
        raise Failure(f"cargo lambda invoke exited with status {proc.returncode}: {output[-1500:]}")
    try:
        return json.loads(stdout)
    except ValueError:
        raise Failure(f"cargo lambda invoke printed no JSON: {stdout[-500:]!r} {stderr[-500:]!r}") from None


def load_manifest() -> dict[str, Any]:
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError) as err:
        raise HarnessError(f"cannot read {MANIFEST}: {err}") from None
    entries = manifest.get("invocations")
    if not isinstance(entries, list) or not entries:
        raise HarnessError(f"{MANIFEST} has no invocations")
    for i, entry in enumerate(entries, 1):
        for key in ("function", "event", "expect"):
            if key not in entry:
                raise HarnessError(f"{MANIFEST}: invocation {i} has no {key!r}")
        if not (EVENTS / entry["event"]).is_file():
            raise HarnessError(f"{MANIFEST}: invocation {i}: events/{entry['event']} does not exist")
    return manifest


def run() -> int:
    endpoint = os.environ.get("ORDERLY_TEST_DYNAMODB_ENDPOINT", "").strip()
    if not endpoint:
        print(
            "ORDERLY_TEST_DYNAMODB_ENDPOINT is not set: start DynamoDB Local first (scripts/test does, via "
            "start_dynamodb_local in scripts/emulators.sh) and export its URL, e.g. http://127.0.0.1:8000",
            file=sys.stderr,
        )
        print("0 passed, 1 failed")
        return 2

    manifest = load_manifest()
    entries = manifest["invocations"]
    require_file(BIN_DIR / "orderly-local", "build it with `cargo build --workspace --all-targets`")
    if not (VENV_BIN / "cargo-lambda").is_file():
        raise HarnessError(f"{VENV_BIN / 'cargo-lambda'} is missing: run scripts/setup-tools.sh")
    if shutil.which("cargo") is None:
        raise HarnessError("cargo is not on PATH")

    prefix = f"lambda-{secrets.token_hex(4)}-"
    env = base_env(endpoint, prefix)
    log_dir = Path(tempfile.mkdtemp(prefix="orderly-lambda-events-"))
    children = Children(log_dir)
    passed = failed = 0
    print(f"tables {prefix}*, DynamoDB at {endpoint}, logs in {log_dir}", file=sys.stderr)
    try:
        create_tables(children, env, manifest.get("setup", {}))
        port = start_watch(children, env)
        print(f"cargo lambda watch --only-lambda-apis on 127.0.0.1:{port}", file=sys.stderr)
        functions = Functions(children, env, port)
        for function in dict.fromkeys(e["function"] for e in entries):
            functions.start(function)
        time.sleep(0.5)  # a binary that cannot start at all shows it here, not as a timeout
        for function in functions.procs:
            functions.check_alive(function)

        captures: dict[str, Any] = {}
        global_subs = manifest.get("substitute", {})
        for entry in entries:
            function, event = entry["function"], entry["event"]
            status: Any = "-"
            try:
                note = functions.ensure_running(function)
                if note:
                    print(f"  note: {note}")
                text = (EVENTS / event).read_text()
                text = substitute(text, {**global_subs, **entry.get("substitute", {})}, captures)
                try:
                    json.loads(text)
                except ValueError as err:
                    raise Failure(f"the event is not JSON after substitution: {err}") from None
                try:
                    response = Response(invoke(function, text, port, env, log_dir))
                except TimedOut as err:
                    # Like Lambda after a timeout: this environment goes, the next call gets a new one.
                    children.stop(functions.procs.pop(function))
                    raise Failure(f"{err}; stopped {function}, the next invocation starts it again:\n{children.log_tail(function)}") from None
                except Failure as err:
                    proc = functions.procs[function]
                    if proc.poll() is not None:
                        raise Failure(f"{err}\n  {function} exited with status {proc.returncode}:\n{children.log_tail(function)}") from None
                    raise
                status = response.status
                problems = check(entry["expect"], response, captures)
                for name, path in entry.get("capture", {}).items():
                    try:
                        value = lookup(response.json(), path)
                    except Failure as err:
                        value, problems = MISSING, problems + [str(err)]
                    if value is MISSING:
                        problems.append(f"capture {name}: body.{path} is absent")
                    else:
                        captures[name] = value
                if problems:
                    raise Failure("; ".join(problems) + f"\n  response: {json.dumps(response.raw)[:1500]}")
                passed += 1
                print(f"PASS  {function:<10} {event:<45} {status}")
            except Failure as err:
                failed += 1
                print(f"FAIL  {function:<10} {event:<45} {status}\n  {err}")
            sys.stdout.flush()

        invoked = {e["event"] for e in entries}
        for path in sorted(EVENTS.glob("*.json")):
            if path == MANIFEST or path.name in invoked:
                continue
            failed += 1
            print(f"FAIL  {'-':<10} {path.name:<45} -\n  events/{path.name} is not invoked by events/manifest.json")
        if failed:
            for name in functions.starts:
                print(f"--- last lines of {children.log_path(name)}:\n{children.log_tail(name)}")
    except HarnessError as err:
        failed += 1
        print(f"FAIL  setup: {err}")
    except KeyboardInterrupt as err:
        failed += 1
        print(f"FAIL  interrupted ({err or 'Ctrl-C'})")
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        children.stop_all()
        delete_tables(env, prefix)
        if failed:
            print(f"logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main() -> int:
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks stop every child.
    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        return run()
    except HarnessError as err:
        print(f"FAIL  setup: {err}", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
