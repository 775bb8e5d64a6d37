#!/usr/bin/env python3
"""Cold-start probe: how long each Lambda bootstrap takes from process start to its first poll of
the Runtime API (init), and how long its first invocation takes.

    python3 scripts/cold_start_probe.py                       # the binaries found (see below)
    python3 scripts/cold_start_probe.py --bin-dir target/debug --runs 10 auth orders

For every function (the crates in functions/), `--runs` times: starts a minimal Lambda Runtime API
on 127.0.0.1 (a fresh port each run), starts the function's binary with AWS_LAMBDA_RUNTIME_API
pointing at it, and times
  init        process start -> its first GET /2018-06-01/runtime/invocation/next;
  invocation  the event handed out (that GET answered) -> the function's POST of .../response
              or .../error.
The first /next is answered with one event from events/ and the headers Lambda sends
(Lambda-Runtime-Aws-Request-Id, -Deadline-Ms, -Invoked-Function-Arn, -Trace-Id); the second
/next blocks until the probe kills the process, as Lambda freezes an idle one.

The functions get the environment template.yaml gives them, with made-up table names, queue URLs
and secret, fake credentials, and every AWS endpoint (AWS_ENDPOINT_URL) on a loopback port that
refuses connections: nothing leaves the machine. AWS_MAX_ATTEMPTS=1, so a call to that endpoint
fails at once instead of after the SDK's backoff. The events are cheap ones: for the HTTP
functions a request answered without any AWS call (401 for a missing or invalid token, 400 for a
malformed body); for the workers their usual message, whose first AWS call is refused, so the
batch response reports it for retry (the table says what each function answered).

`--emulate` runs binaries of another architecture under qemu-user (Debian's qemu-user and
libc6-arm64-cross): the arm64 bootstraps that ship can be checked to start and answer here;
their times are the emulator's and are not held to the budget.

Binaries: `--bin-dir DIR` takes DIR/<name>/bootstrap or DIR/<name>. Without it, per function the
first of target/lambda/<name>/bootstrap (cargo lambda build), target/release/<name> and
target/debug/<name> that exists and runs on this machine's architecture (an arm64 build is
skipped on x86_64). Figures for debug builds are not Lambda's: see docs/deploying.md.

Prints a table (init min / median / max, first invocation median, what the function answered)
and exits 1 when a function's median init exceeds --max-init-ms (default 10), when one fails to
start or answer, or when a binary is missing. Python 3 standard library only. Not part of
scripts/test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
EVENTS = ROOT / "events"
TARGET = ROOT / "target"

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "orderly-probe"
RUNTIME_PREFIX = "/2018-06-01/runtime"

# The event each function gets (files in events/), chosen to be cheap: see the docstring.
EVENT_FOR = {
    "auth": "auth-logout.json",  # a placeholder token: 401 before any table is read
    "customers": "customers-create-malformed-json.json",  # 400 before any table is read
    "products": "products-create-anonymous.json",  # 401
    "orders": "orders-list.json",  # a placeholder token: 401
    "payments": "payments-list.json",  # a placeholder token: 401
    "admin": "admin-metrics-anonymous.json",  # 401
    "order-worker": "order-worker-release.json",  # reads the order: refused, retried
    "payment-worker": "payment-worker-charge.json",
    "fulfillment-worker": "fulfillment-worker-ship.json",
    "notification-worker": "notification-worker-deliver.json",
}
# template.yaml's MemorySize per function (Globals: 128), for AWS_LAMBDA_FUNCTION_MEMORY_SIZE.
MEMORY_MB = {"auth": 1024, "customers": 1024}
# Per-function variables template.yaml sets beside the Globals.
EXTRA_ENV = {
    "order-worker": {"LOW_STOCK_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-LowStockTopic"},
    "notification-worker": {"MAIL_FROM": "Orderly <orders@orderly.example>"},
}

ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64"}
HOST_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())


# ---------------------------------------------------------------- the Runtime API


class RuntimeApi(ThreadingHTTPServer):
    """One execution environment's Runtime API: hands out one event, records the answer."""

    daemon_threads = True

    def __init__(self, function: str, event: bytes, timeout_s: float) -> None:
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.function = function
        self.event = event
        self.timeout_s = timeout_s
        self.request_id = str(uuid.uuid4())
        self.lock = threading.Lock()
        self.polls = 0
        self.first_poll_ns: int | None = None
        self.handed_out_ns: int | None = None
        self.answer: tuple[str, int, bytes] | None = None  # (kind, time, body)
        self.answered = threading.Event()
        self.released = threading.Event()  # set when the process is gone: unblocks /next

    def handle_error(self, request, client_address) -> None:
        # The probe kills the process while its connection is open: a reset is expected.
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # lambda_runtime keeps its connection alive
    server: RuntimeApi

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        now = time.perf_counter_ns()
        api = self.server
        if self.path != f"{RUNTIME_PREFIX}/invocation/next":
            self.reply(404, b'{"errorMessage":"unknown path"}')
            return
        with api.lock:
            api.polls += 1
            first = api.polls == 1
            if first:
                api.first_poll_ns = now
        if not first:
            # Lambda would freeze the environment here; the probe kills the process instead.
            api.released.wait()
            self.close_connection = True
            return
        deadline_ms = int(time.time() * 1000 + api.timeout_s * 1000)
        epoch_hex = f"{int(time.time()):08x}"
        headers = {
            "Lambda-Runtime-Aws-Request-Id": api.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-{api.function}:live",
            "Lambda-Runtime-Trace-Id": f"Root=1-{epoch_hex}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=1",
        }
        # Stamped before the write: the function may answer before this thread runs again.
        api.handed_out_ns = time.perf_counter_ns()
        self.reply(200, api.event, headers)

    def do_POST(self) -> None:  # noqa: N802
        api = self.server
        body = self.read_body()
        now = time.perf_counter_ns()
        path = self.path
        if path == f"{RUNTIME_PREFIX}/init/error":
            kind = "init error"
        elif path == f"{RUNTIME_PREFIX}/invocation/{api.request_id}/response":
            kind = "response"
        elif path == f"{RUNTIME_PREFIX}/invocation/{api.request_id}/error":
            kind = "error"
        else:
            self.reply(404, b'{"errorMessage":"unknown path"}')
            return
        self.reply(202, b'{"status":"OK"}')
        with api.lock:
            if api.answer is None:
                api.answer = (kind, now, body)
        api.answered.set()

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


# ---------------------------------------------------------------- one cold start


def refused_endpoint() -> tuple[socket.socket, str]:
    """A loopback port bound but never listened on: connections to it are refused at once, and
    no other process can take it while the probe holds it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def function_env(function: str, runtime_api: str, endpoint: str, home: str) -> dict[str, str]:
    """What Lambda and template.yaml give the function, with made-up values (see docstring)."""
    queue = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{STACK}"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "HOME": home,
        # Lambda's own variables (provided.al2023).
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": f"{STACK}-{function}",
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB.get(function, 128)),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{STACK}-{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "probe",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",  # template.yaml's LoggingConfig
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        "_HANDLER": "bootstrap",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "AKIAPROBEPROBEPROBE0",
        "AWS_SECRET_ACCESS_KEY": "probe-secret-access-key-not-a-real-one",
        "AWS_SESSION_TOKEN": "probe-session-token",
        # Nothing leaves the machine: every service's endpoint refuses connections, no profile
        # files (HOME is an empty directory), no instance metadata. One attempt per call (no
        # backoff between retries).
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        # template.yaml's Globals.Function.Environment.
        "CUSTOMERS_TABLE": f"{STACK}-customers",
        "PRODUCTS_TABLE": f"{STACK}-products",
        "ORDERS_TABLE": f"{STACK}-orders",
        "JWT_SECRET": "cold-start-probe-secret-of-at-least-32-bytes-0123456789",
        "JWT_PREVIOUS_SECRET": "",
        "TOKEN_TTL_SECONDS": "900",
        "COOLDOWN_SECONDS": "300",
        "MAX_DEFERRED_ORDERS": "3",
        "PAYMENT_DEADLINE_SECONDS": "1800",
        "MAX_UNPAID_UNITS": "100",
        "MAX_UNPAID_CENTS": "1000000",
        "PAYMENT_CHARGE_WINDOW_SECONDS": "900",
        "IDEMPOTENCY_TTL_SECONDS": "86400",
        "GATEWAY_LATENCY_MS": "0",
        "GATEWAY_FAILURE_RATE": "0",
        "GATEWAY_BREAKER_FAILURES": "5",
        "GATEWAY_BREAKER_SECONDS": "30",
    }
    for name in ("orders", "payments", "fulfillment", "notifications"):
        env[f"{name.upper()}_QUEUE_URL"] = f"{queue}-{name}"
        env[f"{name.upper()}_DLQ_URL"] = f"{queue}-{name}-dlq"
    env.update(EXTRA_ENV.get(function, {}))
    return env


def describe_answer(kind: str, body: bytes) -> str:
    """What the function answered, in a few words."""
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        payload = None
    if kind != "response":
        message = payload.get("errorType") or payload.get("errorMessage") if isinstance(payload, dict) else None
        return f"{kind}: {message or body[:60]!r}"
    if isinstance(payload, dict) and "statusCode" in payload:
        return f"HTTP {payload['statusCode']}"
    if isinstance(payload, dict) and "batchItemFailures" in payload:
        failures = len(payload["batchItemFailures"])
        return "batch: all handled" if failures == 0 else f"batch: {failures} to retry (AWS refused)"
    return "response"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def cold_start(function: str, command: list[str], event: bytes, timeout_s: float, log_dir: Path, run: int) -> dict:
    """One process start: {'init_ms', 'invoke_ms', 'answer'} or {'failure'}."""
    api = RuntimeApi(function, event, timeout_s)
    server = threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    server.start()
    blocker, endpoint = refused_endpoint()
    log_path = log_dir / f"{function}-{run}.log"
    home = tempfile.mkdtemp(prefix="home-", dir=log_dir)
    env = function_env(function, api.address, endpoint, home)
    proc = None
    try:
        with open(log_path, "wb") as log:
            started = time.perf_counter_ns()
            proc = subprocess.Popen(
                command, env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while not api.answered.wait(0.02):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        if api.first_poll_ns is None:
            why = f"exited with status {proc.poll()}" if proc.poll() is not None else f"no poll within {timeout_s:g} s"
            return {"failure": f"never polled the Runtime API ({why})", "log": log_path}
        result = {"init_ms": (api.first_poll_ns - started) / 1e6}
        if api.answer is None:
            why = f"exited with status {proc.poll()}" if proc.poll() is not None else f"no answer within {timeout_s:g} s"
            return {**result, "failure": f"did not answer its event ({why})", "log": log_path}
        kind, answered_ns, body = api.answer
        if kind == "init error":
            return {**result, "failure": describe_answer(kind, body), "log": log_path}
        return {**result, "invoke_ms": (answered_ns - api.handed_out_ns) / 1e6, "answer": describe_answer(kind, body)}
    finally:
        if proc is not None:
            stop(proc)
        api.released.set()
        api.shutdown()
        api.server_close()
        blocker.close()


# ---------------------------------------------------------------- binaries and the table


def elf_machine(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    (machine,) = struct.unpack("<H" if header[5] == 1 else ">H", header[18:20])
    return ELF_MACHINES.get(machine, hex(machine))


def emulator(machine: str) -> list[str] | None:
    """qemu-user and the target's C library (Debian: qemu-user, libc6-arm64-cross), if installed."""
    qemu = shutil.which(f"qemu-{machine}")
    sysroot = Path(f"/usr/{machine}-linux-gnu")
    return [qemu, "-L", str(sysroot)] if qemu and sysroot.is_dir() else None


def find_binary(function: str, bin_dir: Path | None, emulate: bool) -> tuple[Path | None, list[str], str]:
    """The binary, the command that runs it, and a note; (None, [], why) when none runs here."""
    if bin_dir is not None:
        candidates = [bin_dir / function / "bootstrap", bin_dir / function]
    else:
        candidates = [TARGET / "lambda" / function / "bootstrap", TARGET / "release" / function,
                      TARGET / "debug" / function]
    skipped = []
    for path in candidates:
        if not path.is_file() or not os.access(path, os.X_OK):
            continue
        machine = elf_machine(path)
        if machine is not None and machine != HOST_MACHINE:
            runner = emulator(machine) if emulate else None
            if runner is not None:
                return path, [*runner, str(path.resolve())], f"emulated {machine}"
            skipped.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} is {machine}"
                           + (", and qemu-user or its C library is missing" if emulate else ""))
            continue
        return path, [str(path.resolve())], ""
    where = ", ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in candidates)
    return None, [], f"no binary that runs on {HOST_MACHINE} among {where}" + (f" ({'; '.join(skipped)})" if skipped else "")


def build_kind(path: Path) -> str:
    parts = path.parts
    if "lambda" in parts:
        return "cargo lambda"
    if "release" in parts:
        return "release"
    if "debug" in parts:
        return "debug"
    return "build unknown"


def fmt(ms: float) -> str:
    return f"{ms:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("functions", nargs="*", help="functions to probe (default: every crate in functions/)")
    parser.add_argument("--bin-dir", type=Path, help="directory of the binaries (DIR/<name>/bootstrap or DIR/<name>)")
    parser.add_argument("--runs", type=int, default=5, help="cold starts per function (default 5)")
    parser.add_argument("--max-init-ms", type=float, default=10.0, help="fail when a median init exceeds this (default 10)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a run may take (default 30)")
    parser.add_argument("--emulate", action="store_true",
                        help="run binaries of another architecture (the arm64 bootstraps) under qemu-user: checks "
                             "that they start and answer; emulated times are not held to --max-init-ms")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    known = sorted(p.name for p in FUNCTIONS.iterdir() if (p / "Cargo.toml").is_file())
    functions = args.functions or known
    unknown = [f for f in functions if f not in known]
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}; known: {', '.join(known)}")
    bin_dir = args.bin_dir.resolve() if args.bin_dir else None
    if bin_dir is not None and not bin_dir.is_dir():
        parser.error(f"--bin-dir {args.bin_dir} is not a directory")

    print(f"cold-start probe: {args.runs} run(s) per function on {HOST_MACHINE}, Runtime API on 127.0.0.1, "
          f"AWS endpoints refused on loopback", flush=True)
    rows, problems = [], []
    with tempfile.TemporaryDirectory(prefix="cold-start-probe-") as tmp:
        log_dir = Path(tmp)
        for function in functions:
            binary, command, why = find_binary(function, bin_dir, args.emulate)
            if binary is None:
                problems.append(f"{function}: {why}")
                rows.append((function, "-", "-", "-", "missing binary"))
                continue
            event_file = EVENTS / EVENT_FOR.get(function, "")
            if not event_file.is_file():
                problems.append(f"{function}: no event file {event_file.relative_to(ROOT)} (EVENT_FOR in this script)")
                continue
            event = event_file.read_bytes()
            inits, invokes, answers = [], [], []
            for run in range(args.runs):
                result = cold_start(function, command, event, args.timeout, log_dir, run)
                if "init_ms" in result:
                    inits.append(result["init_ms"])
                if "failure" in result:
                    tail = result["log"].read_text(errors="replace").splitlines()[-8:]
                    problems.append("\n".join([f"{function} run {run + 1}: {result['failure']}",
                                                *(f"    | {line}" for line in tail)]))
                    break
                invokes.append(result["invoke_ms"])
                answers.append(result["answer"])
            shown = binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary
            init_cell = f"{fmt(min(inits))} / {fmt(statistics.median(inits))} / {fmt(max(inits))}" if inits else "-"
            invoke_cell = fmt(statistics.median(invokes)) if invokes else "-"
            answer = ", ".join(sorted(set(answers))) if answers else "failed"
            kind = build_kind(binary) + (f", {why}" if why else "")
            rows.append((function, f"{shown} ({kind})", init_cell, invoke_cell, answer))
            if not why and inits and len(inits) == args.runs and statistics.median(inits) > args.max_init_ms:
                problems.append(f"{function}: median init {fmt(statistics.median(inits))} ms > {args.max_init_ms:g} ms")

    header = ("function", "binary", "init ms (min / median / max)", "1st invocation ms (median)", "answered")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    if problems:
        print(f"\nFAILED ({len(problems)}):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        if any("(debug)" in row[1] for row in rows):
            print("  (debug builds are unoptimized: over half of their init goes to decoding the system's CA "
                  "certificates; the budget is meant for release builds, see docs/deploying.md)", file=sys.stderr)
        return 1
    print()
    if any("emulated" in row[1] for row in rows):
        print("emulated binaries started and answered (their times are qemu's, not Lambda's)")
    if any("emulated" not in row[1] for row in rows):
        print(f"every native binary's median init is at most {args.max_init_ms:g} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
