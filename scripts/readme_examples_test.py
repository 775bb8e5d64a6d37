#!/usr/bin/env python3
"""Runs README.md's curl examples verbatim against a fresh orderly-local.

Run by scripts/test after `cargo build`. Takes the run command's admin credentials and the
example block (the ```sh block after `<!-- example -->`) from README.md, starts
target/debug/orderly-local on a free port over a temporary data directory, runs the block with
`bash -euo pipefail` (only the API address is changed), and checks what a reader would: the
script succeeds, nothing answers 5xx, and the answers the comments promise are there; then
that the outbox holds one well-formed email per notice of the journey.
Prints `N passed, M failed`; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SERVER = ROOT / "target" / "debug" / "orderly-local"

# What the examples' comments promise, as text that must appear in their output.
EXPECTED = {
    "a stale If-Match answers 412": '"status":412',
    "a customer listing customers gets 403": '"status":403',
    "invalid sign-up fields answer 422": '"status":422',
    "malformed JSON answers 400": '"status":400',
    "an order during the cooldown is deferred": '"status":"processing order"',
    "too little stock answers 409 naming the product": "not enough stock for: Kettle",
    "a declined card is recorded": '"failure_reason":"card_declined"',
    "the good card succeeds": '"status":"succeeded"',
    "the order ships by itself": '"tracking_number":"OP',
    "the label is ZPL": "^XA",
    "the admin records delivery": '"status":"delivered"',
    "an illegal status change answers 409": "cannot go from delivered to paid",
    "metrics count by status": '"by_status"',
    "an order crossing the threshold raises one alert": '"product_name":"Kettle","stock":1,"threshold":2,"cause":"order"',
    "inventory shows the units held": '"held":',
    "an adjustment is kept with its reason": '"reason":"delivery from the supplier"',
    "the admin's note is on the order": '"admin_note":"left with the neighbour"',
    "the overview counts revenue and dead letters": '"dead_letters":[{"queue":"orders"',
    "the customer lists their notices": '"kind":"order_shipped"',
    "a password change refuses the old token and answers a new one": "401\n200\n",
    "a password reset is accepted": "202\n",
    "logout takes effect at once": "204\n401\n",
    "delete answers 204 then 404": "204\n404\n",
}


# The email the journey sends (subjects start so), one .eml each in ORDERLY_DATA_DIR/outbox/.
EXPECTED_NOTICES = {
    "Order confirmed": 1,          # the first order, pending
    "We have your order": 2,       # the deferred ones (cooldown)
    "Payment failed": 1,           # the declined card
    "Receipt for order": 1,        # the good card
    "has shipped": 1,
    "was delivered": 1,
    "was cancelled": 1,            # the deferred order cancelled
    "Reset your Orderly password": 1,
    "Your Orderly password was changed": 1,
}


def wait_for_outbox(outbox: Path, count: int, timeout: float = 20.0) -> None:
    """The notification worker sends in the background: give it time to catch up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(list(outbox.glob("*.eml"))) < count:
        time.sleep(0.2)


def outbox_checks(outbox: Path) -> dict[str, bool]:
    """Each .eml parses as RFC 5322 (strictly), has a text and an HTML part, and says what the
    journey did; no card number appears in any."""
    import email
    import email.policy

    subjects: list[str] = []
    checks: dict[str, bool] = {}
    well_formed = True
    for path in sorted(outbox.glob("*.eml")):
        try:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.strict)
            parts = {part.get_content_type() for part in message.walk()}
            body = message.get_body(preferencelist=("plain",)).get_content()
            well_formed &= {"text/plain", "text/html"} <= parts and "@" in str(message["To"])
            well_formed &= message["Message-ID"] is not None and path.stem in str(message["Message-ID"])
            well_formed &= "4242 4242" not in body and "4242424242424242" not in body
            subjects.append(str(message["Subject"]))
        except Exception as err:  # noqa: BLE001 - any parse failure fails the check
            print(f"{path.name}: {err}", file=sys.stderr)
            well_formed = False
    checks["every notice in the outbox is a well-formed email with text and HTML parts"] = well_formed and bool(subjects)
    for start, count in EXPECTED_NOTICES.items():
        found = sum(start in subject for subject in subjects)
        checks[f"the outbox holds {count} x '{start}' (found {found})"] = found == count
    checks[f"nothing else was sent ({len(subjects)} emails)"] = len(subjects) == sum(EXPECTED_NOTICES.values())
    return checks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    run_line = next((l for l in README.splitlines() if "cargo run -p orderly-local" in l and "ORDERLY_ADMIN_USERNAME=" in l), None)
    block = re.search(r"<!-- example -->\s*```sh\n(.*?)```", README, re.S)
    if run_line is None or block is None:
        print("README.md has no run command with an admin, or no <!-- example --> block", file=sys.stderr)
        return 1
    admin = dict(re.findall(r"(ORDERLY_ADMIN_(?:USERNAME|PASSWORD))=(\S+)", run_line))
    port = free_port()
    script = block.group(1).replace("API=http://127.0.0.1:3000", f"API=http://127.0.0.1:{port}")
    if f"127.0.0.1:{port}" not in script:
        print("the example block no longer sets API=http://127.0.0.1:3000", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, **admin, "ORDERLY_ADDR": f"127.0.0.1:{port}", "ORDERLY_DATA_DIR": data, "RUST_LOG": "warn"}
        env.pop("ORDERLY_STORE", None)
        log = open(Path(data) / "server.log", "w")
        server = subprocess.Popen([str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=120)
            wait_for_outbox(Path(data) / "outbox", sum(EXPECTED_NOTICES.values()))
        finally:
            server.terminate()
            server.wait(timeout=10)
        output = result.stdout + result.stderr
        checks = {"the examples run to the end": result.returncode == 0, "nothing answers 5xx": '"status":5' not in output}
        checks.update({name: needle in output for name, needle in EXPECTED.items()})
        checks.update(outbox_checks(Path(data) / "outbox"))
        failed = [name for name, ok in checks.items() if not ok]
        for name, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
        if failed:
            print("--- example output ---\n" + output[-6000:])
            print("--- server log tail ---\n" + (Path(data) / "server.log").read_text()[-3000:])
        print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
