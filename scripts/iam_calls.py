"""The AWS calls each Lambda function makes, checked against template.yaml's IAM policies.

cfn-lint checks the template's shape, not that a function's role allows what its code does: a
route whose role lacks one action answers 500 only once deployed. scripts/lambda_events_test.py
points every function's DynamoDB, SQS, SES and SNS endpoints at a recording proxy of its own
(`Recorder.endpoint`), which forwards each request to the emulator unchanged and notes the IAM
action and resource it needs; `Recorder.problems` then names every call the function's policies
in template.yaml do not allow.

What counts (as IAM authorizes it):
- DynamoDB: the operation on its table, or on the index for a `Query`/`Scan` with `IndexName`;
  `BatchGetItem`/`BatchWriteItem` on each table named; a `TransactWriteItems` as `PutItem`,
  `UpdateItem`, `DeleteItem` or `ConditionCheckItem` per action, `TransactGetItems` as `GetItem`.
- SQS: the action on the queue (`SendMessageBatch` is `sqs:SendMessage`).
- SES v2: sending is `ses:SendEmail` (its identity is not checked here).
- SNS (its query protocol): the action on the topic named by `TopicArn`.

Policies are read as the template writes them: `Allow` statements with `Action` and `Resource`
(actions may use `*`, compared case-insensitively). A statement this check cannot judge (a
`Deny`, a `Condition`, `NotAction` or `NotResource`) fails the check rather than being guessed at.

Tables, queues and topics are named by environment variables (`ORDERS_TABLE: !Ref OrdersTable`
in the Globals, `LOW_STOCK_TOPIC_ARN: !Ref LowStockTopic` in a function's own), so a physical
name in a request maps back to its template resource through the harness's values of the same
variables. Resources are matched as the template writes them: `!GetAtt X.Arn`,
`!Sub ${X.Arn}/index/<name or *>`, and `!Ref X` (a topic's ARN).
"""

from __future__ import annotations

import fnmatch
import http.client
import json
import re
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
SQS_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage", "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}
# Hop-by-hop headers, not forwarded either way.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "content-length"}

# A call's need: (action, kind, name, index) with kind "table", "queue", "topic" or "ses".
Need = tuple[str, str, str, str | None]


def needs_of(target: str, path: str, body: bytes) -> list[Need]:
    """What one request needs, from its X-Amz-Target (JSON protocols) or its path (SES v2)."""
    if path.startswith("/v2/email/outbound-emails"):
        return [("ses:SendEmail", "ses", "*", None)]
    if not target:
        # The query protocol (SNS): a form body naming the action and the topic.
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form and "TopicArn" in form:
            return [(f"sns:{form['Action'][0]}", "topic", form["TopicArn"][0], None)]
    service, _, operation = target.partition(".")
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        request = {}
    if service.startswith("DynamoDB"):
        if operation in ("TransactWriteItems", "TransactGetItems"):
            needs = []
            for item in request.get("TransactItems", []):
                for kind, action in item.items():
                    needs.append((f"dynamodb:{TRANSACT_ACTIONS.get(kind, kind)}", "table", action.get("TableName", "?"), None))
            return needs
        if "RequestItems" in request:
            return [(f"dynamodb:{operation}", "table", table, None) for table in request["RequestItems"]]
        return [(f"dynamodb:{operation}", "table", request.get("TableName", "?"), request.get("IndexName"))]
    if service == "AmazonSQS":
        action = SQS_ACTIONS.get(operation, operation)
        return [(f"sqs:{action}", "queue", request.get("QueueUrl", "?"), None)]
    return [(f"unknown:{target or path}", "?", "?", None)]


class Recorder:
    """One recording proxy per (function, upstream); every need seen, per function."""

    def __init__(self) -> None:
        self.needs: dict[str, set[Need]] = defaultdict(set)
        self.servers: list[ThreadingHTTPServer] = []
        self.lock = threading.Lock()

    def endpoint(self, function: str, upstream: str) -> str:
        """A URL that forwards to `upstream`, recording what `function` asks of it."""
        target = urlsplit(upstream)
        recorder = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

            def forward(self) -> None:
                body = self.read_body()
                with recorder.lock:
                    recorder.needs[function].update(needs_of(self.headers.get("X-Amz-Target", ""), self.path, body))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    connection.request(self.command, target.path.rstrip("/") + self.path, body=body, headers=headers)
                    reply = connection.getresponse()
                    answer = reply.read()
                    self.send_response(reply.status, reply.reason)
                    for key, value in reply.getheaders():
                        if key.lower() not in HOP_HEADERS:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                finally:
                    connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = forward  # noqa: N815

        server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def problems(self, template_path: Path, env: dict[str, str]) -> tuple[int, list[str]]:
        """(calls checked, one line per call a function's policies do not allow)."""
        from cfnlint.decode import decode_str  # the venv's cfn-lint, as validate-template uses

        template, _ = decode_str(template_path.read_text(encoding="utf-8"))
        resources = template["Resources"]
        physical = physical_names(template, env)
        checked, problems = 0, []
        for function, needs in sorted(self.needs.items()):
            statements = function_statements(resources, function)
            if statements is None:
                problems.append(f"{function}: no AWS::Serverless::Function builds this binary")
                continue
            unjudged = [s.get("Sid", "?") for s in statements if not judged(s)]
            if unjudged:
                problems.append(f"{function}: statements {unjudged} use Deny, Condition or Not*, which this check cannot judge")
                continue
            for action, kind, name, index in sorted(needs, key=str):
                checked += 1
                logical = physical.get(name, name) if kind in ("table", "queue", "topic") else name
                if not any(allows(s, action, kind, logical, index) for s in statements):
                    on = f"{logical}" + (f" index {index}" if index else "")
                    problems.append(f"{function}: {action} on {on} is not allowed by its policies in template.yaml")
        return checked, problems


def physical_names(template: dict, env: dict[str, str]) -> dict[str, str]:
    """Physical table names, queue URLs and topic ARNs, as the harness set them, to template
    logical ids: through the Globals' environment variables and each function's own."""
    names = {}
    for variable, logical in referenced_variables(template.get("Globals", {}).get("Function", {})).items():
        if variable in env:
            names[env[variable]] = logical
    for resource in template.get("Resources", {}).values():
        for variable, logical in referenced_variables(resource.get("Properties", {})).items():
            if variable in env:
                names[env[variable]] = logical
    return names


def function_variables(template_path: Path, physical: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each function binary's own environment variables that name a resource the harness made
    (`physical`: logical id to physical name), as template.yaml sets them."""
    from cfnlint.decode import decode_str

    template, _ = decode_str(template_path.read_text(encoding="utf-8"))
    variables: dict[str, dict[str, str]] = {}
    for resource in template["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        own = referenced_variables(resource.get("Properties", {}))
        variables[binary] = {name: physical[logical] for name, logical in own.items() if logical in physical}
    return variables


def referenced_variables(function: dict) -> dict[str, str]:
    """A function's (or the Globals') environment variables set to `!Ref <logical id>`."""
    variables = function.get("Environment", {}).get("Variables", {})
    return {name: value["Ref"] for name, value in variables.items() if isinstance(value, dict) and "Ref" in value}


def function_statements(resources: dict, binary: str) -> list[dict] | None:
    for resource in resources.values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary") != binary:
            continue
        statements = []
        for policy in as_list(resource.get("Properties", {}).get("Policies", [])):
            if isinstance(policy, dict):
                statements.extend(as_list(policy.get("Statement", [])))
        return statements
    return None


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def judged(statement: dict) -> bool:
    """An `Allow` of `Action` on `Resource`, without conditions: what `allows` can decide."""
    return statement.get("Effect") == "Allow" and not ({"Condition", "NotAction", "NotResource"} & statement.keys())


def allows(statement: dict, action: str, kind: str, logical: str, index: str | None) -> bool:
    patterns = [str(a).lower() for a in as_list(statement.get("Action", []))]
    if not any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in patterns):
        return False
    return any(covers(resource, kind, logical, index) for resource in as_list(statement.get("Resource", [])))


def covers(resource: Any, kind: str, logical: str, index: str | None) -> bool:
    if resource == "*" or kind == "ses":
        return True
    if isinstance(resource, dict) and "Ref" in resource:
        return kind == "topic" and resource["Ref"] == logical
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        target = resource["Fn::GetAtt"]
        target = target.split(".", 1) if isinstance(target, str) else target
        return index is None and list(target) == [logical, "Arn"]
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        text = resource["Fn::Sub"] if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"][0]
        match = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/(\S+)", text)
        return bool(match) and index is not None and match[1] == logical and match[2] in ("*", index)
    return False
