#!/usr/bin/env python3
"""Invokes the Lambda binaries with the events in events/ (API Gateway, SQS, DynamoDB Streams,
EventBridge), as Lambda functions.

Run by scripts/test after `cargo build --workspace --all-targets`, with DynamoDB Local and moto's
server (for SQS) up:

    ORDERLY_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:PORT ORDERLY_TEST_SQS_ENDPOINT=http://127.0.0.1:PORT2 \
      .tools/py/bin/python scripts/lambda_events_test.py

What it does:
1. Creates a fresh set of tables (names prefixed `lambda-<random>-`) with the project's own code:
   `target/debug/orderly-local` with ORDERLY_STORE=dynamodb creates missing tables at start-up.
   Creates the four queues and their dead-letter queues (same prefix) in moto with boto3, each
   redriving to its DLQ after 5 receives, as template.yaml does; the functions get their URLs
   (ORDERS_QUEUE_URL, ..., NOTIFICATIONS_DLQ_URL) and AWS_ENDPOINT_URL_SQS. Creates the
   low-stock alert topic in moto's SNS too, and verifies the mail sender in its SES.
2. Starts `cargo lambda watch --only-lambda-apis` on 127.0.0.1 and a free port: the Lambda
   runtime API and invoke API, without cargo-lambda building or starting anything.
3. Starts the prebuilt target/debug/<function> binaries with AWS_LAMBDA_RUNTIME_API pointing at
   it (http://127.0.0.1:PORT/.rt/<function>), so they run the real lambda_runtime loop against
   the fresh tables. (Plain `cargo lambda watch` would `cargo run` each function itself: a
   rebuild under the cargo lock, and a restart whenever someone edits a source file.)
4. For every entry of events/manifest.json, in order: applies its substitutions to the event
   text, runs `cargo lambda invoke ... <function> --data-file <tmp>`, checks the response (an
   API Gateway response, or a worker's raw answer such as an SQS batch response) against the
   expectations, checks what the invocation put on the queues (`queues`: received from moto and
   deleted) and wrote to the function's log (`logs_contain`), and records captures.
5. Checks every DynamoDB, SQS, SES and SNS call the functions made against their IAM policies
   in template.yaml: each function's AWS endpoints are recording proxies of its own, forwarding
   to the emulators (scripts/iam_calls.py). A call its role does not allow is a failure. The
   order worker gets the alert topic (created in moto) as template.yaml gives it to it, so the
   sweep publishes its low-stock alerts to SNS.
6. Prints one line per invocation and `N passed, M failed`; exits non-zero on any failure.
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

from iam_calls import Recorder, function_variables

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
MANIFEST = EVENTS / "manifest.json"
BIN_DIR = ROOT / "target" / "debug"
VENV_BIN = ROOT / ".tools" / "py" / "bin"

TABLES_TIMEOUT = 60  # orderly-local creating the tables
# The queues, as template.yaml has them: the name in the manifest's `queues` expectations, the
# environment variable of its URL, and (for the main queues) that of its dead-letter queue.
QUEUES = {
    "orders": ("ORDERS_QUEUE_URL", "ORDERS_DLQ_URL"),
    "payments": ("PAYMENTS_QUEUE_URL", "PAYMENTS_DLQ_URL"),
    "fulfillment": ("FULFILLMENT_QUEUE_URL", "FULFILLMENT_DLQ_URL"),
    "notifications": ("NOTIFICATIONS_QUEUE_URL", "NOTIFICATIONS_DLQ_URL"),
}
MAX_RECEIVES = 5  # template.yaml's RedrivePolicy maxReceiveCount
MAIL_FROM = "Orderly <orders@orderly.example>"  # the notification worker's sender (template: MailFrom)
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

    def log_size(self, name: str) -> int:
        try:
            return self.log_path(name).stat().st_size
        except OSError:
            return 0

    def log_since(self, name: str, offset: int) -> str:
        """What the child wrote to its log after `offset` bytes (from log_size)."""
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", errors="replace")
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


def base_env(endpoint: str, sqs_endpoint: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    # zig (for cargo-lambda) is found with `python3 -m ziglang`: the venv must come first.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    env["AWS_ENDPOINT_URL_SQS"] = sqs_endpoint
    # moto emulates SES too: the notification worker sends there, from a verified sender.
    env["AWS_ENDPOINT_URL_SESV2"] = sqs_endpoint
    # ... and SNS: the order worker publishes low-stock alerts to the topic template.yaml gives it.
    env["AWS_ENDPOINT_URL_SNS"] = sqs_endpoint
    env["MAIL_FROM"] = MAIL_FROM
    env.setdefault("AWS_REGION", "us-east-1")
    env.setdefault("AWS_ACCESS_KEY_ID", "test")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["CUSTOMERS_TABLE"] = f"{prefix}customers"
    env["PRODUCTS_TABLE"] = f"{prefix}products"
    env["ORDERS_TABLE"] = f"{prefix}orders"
    # As template.yaml's Globals set it: notices reach the notification worker through the
    # orders table's stream (the manifest's stream events), so writers queue none.
    env["NOTICE_RELAY"] = "stream"
    # A fresh signing secret per run: the functions refuse to start without one.
    env["JWT_SECRET"] = secrets.token_urlsafe(48)
    env.pop("JWT_PREVIOUS_SECRET", None)
    # Each function trusts a token it found valid for this long (the bound on how late another
    # function honours a logout): short here, and the manifest waits it out where it matters.
    env["SESSION_CACHE_SECONDS"] = "1"
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

    def __init__(
        self, children: Children, env: dict[str, str], port: int, recorder: Recorder, own: dict[str, dict[str, str]]
    ) -> None:
        self.children = children
        self.env = env
        # Each function's own variables from template.yaml (the order worker's alert topic).
        self.own = own
        self.port = port
        self.recorder = recorder
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}
        # Each function's AWS endpoints: recording proxies of its own (see scripts/iam_calls.py).
        self.endpoints: dict[str, dict[str, str]] = {}

    def start(self, function: str) -> None:
        binary = BIN_DIR / function
        require_file(binary, "build it with `cargo build --workspace --all-targets`")
        self.starts[function] = self.starts.get(function, 0) + 1
        if function not in self.endpoints:
            self.endpoints[function] = {
                var: self.recorder.endpoint(function, self.env[var])
                for var in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL_SNS")
            }
        env = {
            **self.env,
            **self.own.get(function, {}),
            **self.endpoints[function],
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


def aws_client(service: str, endpoint_variable: str, env: dict[str, str], **timeouts: Any) -> Any:
    """A boto3 client for an emulator, at the endpoint `env[endpoint_variable]` names;
    `timeouts` go to botocore's Config (connect_timeout, read_timeout, retries)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise HarnessError("boto3 is missing from the .tools/py venv: run scripts/setup-tools.sh") from None
    return boto3.client(
        service,
        endpoint_url=env[endpoint_variable],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(**timeouts),
    )


def sqs_client(env: dict[str, str]) -> Any:
    return aws_client("sqs", "AWS_ENDPOINT_URL_SQS", env, connect_timeout=2, read_timeout=10, retries={"max_attempts": 2})


def verify_sender(env: dict[str, str]) -> None:
    """Verifies MAIL_FROM's address in moto's SES, as the stack's operator does in SES."""
    ses = aws_client("sesv2", "AWS_ENDPOINT_URL_SESV2", env)
    address = MAIL_FROM.split("<")[1].rstrip(">")
    try:
        ses.create_email_identity(EmailIdentity=address)
    except Exception as err:  # noqa: BLE001 - any failure here means no sending
        raise HarnessError(f"cannot verify {address} in moto's SES at {env['AWS_ENDPOINT_URL_SESV2']}: {err}") from None


def create_topic(env: dict[str, str], prefix: str) -> dict[str, str]:
    """Creates the low-stock alert topic in moto's SNS: template logical id to its ARN."""
    sns = aws_client("sns", "AWS_ENDPOINT_URL_SNS", env)
    try:
        return {"LowStockTopic": sns.create_topic(Name=f"{prefix}low-stock")["TopicArn"]}
    except Exception as err:  # noqa: BLE001 - any failure here means no topic
        raise HarnessError(f"cannot create the alert topic in moto's SNS at {env['AWS_ENDPOINT_URL_SNS']}: {err}") from None


def create_queues(sqs: Any, prefix: str) -> dict[str, str]:
    """Creates `<prefix><name>` and `<prefix><name>-dlq` for every queue, each redriving to its
    DLQ after MAX_RECEIVES receives; returns the URL variables the functions read."""
    urls: dict[str, str] = {}
    try:
        for name, (url_var, dlq_var) in QUEUES.items():
            dlq_url = sqs.create_queue(
                QueueName=f"{prefix}{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
            )["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)})
            url = sqs.create_queue(
                QueueName=f"{prefix}{name}", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "60"}
            )["QueueUrl"]
            urls[url_var], urls[dlq_var] = url, dlq_url
    except Exception as err:  # noqa: BLE001 - any failure here means no queues
        raise HarnessError(f"cannot create the queues in moto at {sqs.meta.endpoint_url}: {err}") from None
    return urls


def delete_queues(sqs: Any, prefix: str) -> None:
    """Best effort: drops every queue of this run."""
    try:
        for url in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []):
            try:
                sqs.delete_queue(QueueUrl=url)
            except Exception:  # noqa: BLE001 - already gone: nothing to clean
                pass
    except Exception:  # noqa: BLE001
        pass


def delete_tables(env: dict[str, str], prefix: str) -> None:
    """Best effort: drops every table of this run (whatever tables the code created), so an
    endpoint that outlives the run keeps nothing of it."""
    try:
        client = aws_client(
            "dynamodb", "AWS_ENDPOINT_URL_DYNAMODB", env, connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}
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
    for text in expect.get("body_contains", []):
        text = resolve(text, captures)
        if str(text) not in response.body_text:
            problems.append(f"body does not contain {text!r}: {response.body_text[:300]!r}")
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


def queue_url(name: str, urls: dict[str, str]) -> str:
    base, dlq = (name[: -len("-dlq")], True) if name.endswith("-dlq") else (name, False)
    if base not in QUEUES:
        raise Failure(f"queues: unknown queue {name!r} (one of {', '.join(QUEUES)}, or one of those + '-dlq')")
    return urls[QUEUES[base][1 if dlq else 0]]


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receives every visible message of a queue and deletes it (bounded: 20 receives)."""
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=30,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        messages.extend(batch)
    return messages


def message_problems(want: dict[str, Any], message: dict[str, Any], captures: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    try:
        body = json.loads(message.get("Body", ""))
    except ValueError:
        body = MISSING
    for path, value in want.get("body", {}).items():
        actual = MISSING if body is MISSING else lookup(body, path)
        value = resolve(value, captures)
        if actual is MISSING or not same(value, actual):
            problems.append(f"body.{path}: {show(actual)}, expected {show(value)}")
    if "correlation_id" in want:
        actual = message.get("MessageAttributes", {}).get("correlation_id", {}).get("StringValue", MISSING)
        value = resolve(want["correlation_id"], captures)
        if actual is MISSING or actual != value:
            problems.append(f"correlation_id: {show(actual)}, expected {show(value)}")
    return problems


def check_queues(expect: dict[str, Any], sqs: Any, urls: dict[str, str], captures: dict[str, Any]) -> list[str]:
    """`queues: {name: {delayed: n, messages: [{body: {path: value}, correlation_id: id}]}}`:
    `delayed` is the queue's ApproximateNumberOfMessagesDelayed (exact in moto); `messages`
    receives every visible message (and deletes it), and wants exactly that many, each matching
    one of the expected ones in any order (standard queues keep no order)."""
    problems: list[str] = []
    for name, want in expect.items():
        url = queue_url(name, urls)
        if "delayed" in want:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
            delayed = int(attributes["Attributes"].get("ApproximateNumberOfMessagesDelayed", "0"))
            if delayed != want["delayed"]:
                problems.append(f"queue {name}: {delayed} delayed message(s), expected {want['delayed']}")
        if "messages" in want:
            received = drain(sqs, url)
            bodies = [m.get("Body", "") for m in received]
            if len(received) != len(want["messages"]):
                problems.append(
                    f"queue {name}: {len(received)} message(s), expected {len(want['messages'])}: {bodies}"
                )
                continue
            unmatched = list(received)
            for expected in want["messages"]:
                found = next((m for m in unmatched if not message_problems(expected, m, captures)), None)
                if found is None:
                    details = "; ".join(message_problems(expected, unmatched[0], captures)) if unmatched else ""
                    problems.append(f"queue {name}: no message matches {json.dumps(expected)} ({details}): {bodies}")
                else:
                    unmatched.remove(found)
    return problems


def check_logs(expect: dict[str, Any], text: str, captures: dict[str, Any]) -> list[str]:
    """`logs_contain` / `logs_absent`: substrings of what the function wrote during the invocation."""
    problems = []
    for needle in expect.get("logs_contain", []):
        needle = str(resolve(needle, captures))
        if needle not in text:
            problems.append(f"the function's log of this invocation does not contain {needle!r}")
    for needle in expect.get("logs_absent", []):
        needle = str(resolve(needle, captures))
        if needle in text:
            problems.append(f"the function's log of this invocation contains {needle!r}")
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

    sqs_endpoint = os.environ.get("ORDERLY_TEST_SQS_ENDPOINT", "").strip()
    if not sqs_endpoint:
        print(
            "ORDERLY_TEST_SQS_ENDPOINT is not set: start moto's server first (scripts/test does, via start_moto "
            "in scripts/emulators.sh) and export its URL, e.g. http://127.0.0.1:5000. The orders, payments and "
            "worker functions refuse to start without their queues.",
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
    env = base_env(endpoint, sqs_endpoint, prefix)
    sqs = sqs_client(env)
    log_dir = Path(tempfile.mkdtemp(prefix="orderly-lambda-events-"))
    children = Children(log_dir)
    recorder = Recorder()
    passed = failed = 0
    print(
        f"tables and queues {prefix}*, DynamoDB at {endpoint}, SQS at {sqs_endpoint}, logs in {log_dir}",
        file=sys.stderr,
    )
    try:
        queue_urls = create_queues(sqs, prefix)
        env.update(queue_urls)
        verify_sender(env)
        create_tables(children, env, manifest.get("setup", {}))
        port = start_watch(children, env)
        print(f"cargo lambda watch --only-lambda-apis on 127.0.0.1:{port}", file=sys.stderr)
        own = function_variables(ROOT / "template.yaml", create_topic(env, prefix))
        functions = Functions(children, env, port, recorder, own)
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
            time.sleep(entry.get("after_seconds", 0))
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
                log_offset = children.log_size(function)
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
                status = response.status if response.status is not None else "-"
                # Captured first, so this invocation's own queue and log checks can use them
                # (the charge message POST /payments queues names the payment it created).
                problems: list[str] = []
                for name, path in entry.get("capture", {}).items():
                    try:
                        value = lookup(response.json(), path)
                    except Failure as err:
                        value, problems = MISSING, problems + [str(err)]
                    if value is MISSING:
                        problems.append(f"capture {name}: body.{path} is absent")
                    else:
                        captures[name] = value
                problems += check(entry["expect"], response, captures)
                try:
                    problems += check_queues(entry["expect"].get("queues", {}), sqs, queue_urls, captures)
                except Failure:
                    raise
                except Exception as err:  # noqa: BLE001 - moto unreachable, an SQS error: this check fails
                    problems.append(f"queues: {type(err).__name__}: {err}")
                problems += check_logs(entry["expect"], children.log_since(function, log_offset), captures)
                if problems:
                    raise Failure("; ".join(problems) + f"\n  response: {json.dumps(response.raw)[:1500]}")
                passed += 1
                print(f"PASS  {function:<18} {event:<45} {status}")
            except Failure as err:
                failed += 1
                print(f"FAIL  {function:<18} {event:<45} {status}\n  {err}")
            sys.stdout.flush()

        # Every DynamoDB, SQS and SES call the functions made is allowed by their roles.
        every_own = {name: value for variables in own.values() for name, value in variables.items()}
        checked, denied = recorder.problems(ROOT / "template.yaml", {**env, **every_own})
        for problem in denied:
            failed += 1
            print(f"FAIL  {'iam':<18} {problem}")
        if checked and not denied:
            passed += 1
            print(f"PASS  {'iam':<18} {checked} kinds of call by {len(recorder.needs)} functions, each allowed by template.yaml")
        elif not checked:
            failed += 1
            print(f"FAIL  {'iam':<18} no AWS call was recorded: the recording proxies saw nothing")

        invoked = {e["event"] for e in entries}
        for path in sorted(EVENTS.glob("*.json")):
            if path == MANIFEST or path.name in invoked:
                continue
            failed += 1
            print(f"FAIL  {'-':<18} {path.name:<45} -\n  events/{path.name} is not invoked by events/manifest.json")
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
        recorder.close()
        delete_tables(env, prefix)
        delete_queues(sqs, prefix)
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
