#!/usr/bin/env python3
"""Drives the admin dashboard (GET /admin) in headless Chromium against a fresh orderly-local.

Run by scripts/test after `cargo build`. Starts target/debug/orderly-local on a free loopback
port over a temporary data directory with a local admin, seeds products, customers, orders and
payments through the HTTP API (urllib), then drives the real page with Selenium 4 and Debian's
chromium + chromedriver (explicit paths: Selenium Manager never downloads anything). Each test
is a function; prints `N passed, M failed` and exits non-zero on any failure.

    .tools/py/bin/python scripts/browser_test.py [--screenshots DIR] [--only TEST ...]

With --screenshots DIR it also saves dashboard-desktop.png (1280x900) and dashboard-phone.png
(375x812) of the overview into DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

# Selenium Manager must never fetch a driver or a browser: the paths below are explicit, and
# offline mode makes any attempt fail instead of downloading.
os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "target" / "debug" / "orderly-local"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "local-admin-password"
XSS_NAME = "<img src=x onerror=alert(1)>"
GOOD_CARD = {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
DECLINED_CARD = {"number": "4000 0000 0000 0002", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
WAIT = 10  # seconds for an explicit wait in the page
VIEWS = ["overview", "orders", "inventory", "payments", "alerts", "customers", "account"]


class Failure(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the HTTP API (urllib)


class Api:
    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if body is not None:
            request.add_header("content-type", "application/json")
        if token:
            request.add_header("authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                raw = response.read()
                status, response_headers = response.status, response.headers
        except urllib.error.HTTPError as error:
            raw = error.read()
            status, response_headers = error.code, error.headers
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return status, response_headers, payload

    def ok(self, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None, expect=(200, 201, 202, 204)):
        status, response_headers, payload = self.call(method, path, body, token, headers)
        if status not in expect:
            raise Failure(f"{method} {path} answered {status}: {payload}")
        return payload, response_headers

    def login(self, body: dict) -> str:
        payload, _ = self.ok("POST", "/auth/login", body)
        return payload["access_token"]


# ---------------------------------------------------------------- the run


class Run:
    def __init__(self, base: str, api: Api, driver, data_dir: Path):
        self.base = base
        self.api = api
        self.driver = driver
        self.data_dir = data_dir
        self.ids: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.emails: dict[str, str] = {}
        self.admin = ""
        # Console entries the tests provoke on purpose: (URL prefix, HTTP status).
        self.expected_console: list[tuple[str, int]] = []
        self.console: list[tuple[str, dict]] = []

    # ------------------------------------------------------------ seeding

    def seed(self) -> None:
        api = self.api
        self.admin = api.login({"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
        products = {
            "mug": {"name": "Blue Mug", "description": "Stoneware, 350 ml", "price_cents": 1299, "stock": 50, "category": "kitchen", "low_stock_threshold": 5},
            "kettle": {"name": "Kettle", "description": "1.7 l, steel", "price_cents": 3450, "stock": 6, "category": "kitchen", "low_stock_threshold": 3},
            "lamp": {"name": "Desk Lamp", "description": "LED, warm white", "price_cents": 4500, "stock": 12, "category": "office", "low_stock_threshold": 2},
            "rope": {"name": "Garden Rope", "description": "10 m, jute", "price_cents": 899, "stock": 10, "category": "garden", "low_stock_threshold": 2},
            "hose": {"name": "Garden Hose", "description": "25 m", "price_cents": 2499, "stock": 1, "category": "garden", "low_stock_threshold": 3},
            "xss": {"name": XSS_NAME, "description": "a name that must render as text", "price_cents": 999, "stock": 20, "category": "test", "low_stock_threshold": 1},
        }
        for key, body in products.items():
            payload, _ = api.ok("POST", "/products", body, self.admin)
            self.ids[key] = payload["id"]
        people = {
            "ada": ("Ada Lovelace", "London", "GB"),
            "bob": ("Bob Marley", "Kingston", "JM"),
            "cyd": ("Cyd Charisse", "Amarillo", "US"),
            "dee": ("Dee Dee Bridgewater", "Memphis", "US"),
        }
        for key, (name, city, country) in people.items():
            email = f"{key}-{uuid.uuid4().hex[:8]}@example.com"
            body = {
                "name": name, "email": email, "password": "correct horse battery", "phone": "+1 555 0100",
                "address": {"line1": "1 Main Street", "city": city, "postal_code": "12345", "country": country},
            }
            payload, _ = api.ok("POST", "/customers", body)
            self.ids[key] = payload["id"]
            self.emails[key] = email
            self.tokens[key] = api.login({"email": email, "password": "correct horse battery"})
        # Ada orders and pays: the workers mark it paid and ship it.
        self.ids["ada_order"] = self.place("ada", [("mug", 2)])
        api.ok("POST", "/payments", {"order_id": self.ids["ada_order"], "method": "card", "card": {**GOOD_CARD, "holder": "Ada Lovelace"}}, self.tokens["ada"])
        # Bob's order stays pending: the page takes it along.
        self.ids["bob_order"] = self.place("bob", [("mug", 1), ("rope", 1)])
        # Cyd's card is declined: a failed payment to list.
        self.ids["cyd_order"] = self.place("cyd", [("lamp", 1)])
        api.ok("POST", "/payments", {"order_id": self.ids["cyd_order"], "method": "card", "card": DECLINED_CARD}, self.tokens["cyd"])
        self.wait_api(lambda: self.order_status("ada_order") == "shipped", 20, "Ada's paid order to be shipped by the workers")
        self.wait_api(lambda: self.payment_statuses("cyd_order") == ["failed"], 20, "Cyd's declined payment to be failed by the worker")

    def place(self, customer: str, lines: list[tuple[str, int]]) -> str:
        body = {"items": [{"product_id": self.ids[p], "quantity": q} for p, q in lines]}
        payload, _ = self.api.ok("POST", "/orders", body, self.tokens[customer], expect=(201,))
        return payload["id"]

    def order_status(self, key: str) -> str:
        payload, _ = self.api.ok("GET", f"/orders/{self.ids[key]}", token=self.admin)
        return payload["status"]

    def payment_statuses(self, key: str) -> list[str]:
        payload, _ = self.api.ok("GET", f"/payments?order_id={self.ids[key]}", token=self.admin)
        return [p["status"] for p in payload["items"]]

    @staticmethod
    def wait_api(condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise Failure(f"timed out waiting for {what}")

    # ------------------------------------------------------------ page helpers

    def wait(self, condition, message: str, timeout: float = WAIT):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda d: condition())
        except TimeoutException:
            raise Failure(f"timed out waiting for {message}; page message: {self.message_text()!r}") from None

    def q(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def qs(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css: str) -> bool:
        found = self.qs(css)
        return bool(found) and found[0].is_displayed()

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def message_text(self) -> str:
        try:
            found = self.qs("#message")
            return found[0].text if found and found[0].is_displayed() else ""
        except Exception:  # noqa: BLE001 - diagnostics only
            return ""

    def notice_text(self) -> str:
        found = self.qs("#notice")
        return found[0].text if found and found[0].is_displayed() else ""

    def token(self):
        return self.js("return sessionStorage.getItem('orderly.admin.token');")

    def open_page(self) -> None:
        self.driver.get(f"{self.base}/admin")
        self.wait(lambda: self.visible("#login-view") or self.visible("#nav"), "the page to start")

    def login_through_form(self, username: str, password: str) -> None:
        user = self.q("#login-username")
        user.clear()
        user.send_keys(username)
        secret = self.q("#login-password")
        secret.clear()
        secret.send_keys(password)
        self.q("#login-submit").click()

    def ensure_logged_in(self) -> None:
        if self.driver.current_url.startswith(f"{self.base}/admin") and self.token():
            return
        self.open_page()
        if self.token():
            return
        self.login_through_form(ADMIN_USERNAME, ADMIN_PASSWORD)
        self.wait(lambda: self.visible("#view-overview"), "the overview after signing in")

    def goto(self, hash_: str, view: str) -> None:
        """Navigates to a view and waits for its data to be loaded (data-state=ready)."""
        self.ensure_logged_in()
        section = f"#view-{view}"
        self.js("document.querySelector(arguments[0]).dataset.state = 'stale';", section)
        self.js("if (location.hash === arguments[0]) { window.dispatchEvent(new HashChangeEvent('hashchange')); } else { location.hash = arguments[0]; }", hash_)
        self.wait(lambda: self.visible(section) and self.q(section).get_attribute("data-state") in ("ready", "error"), f"{hash_} to load")
        check(self.q(section).get_attribute("data-state") == "ready", f"{hash_} failed to load: {self.message_text()!r}")

    def reloads(self, view: str, action) -> None:
        """Runs `action` (a click that reloads the view) and waits for the view's new data."""
        section = f"#view-{view}"
        self.js("document.querySelector(arguments[0]).dataset.state = 'stale';", section)
        action()
        self.wait(lambda: self.q(section).get_attribute("data-state") in ("ready", "error"), f"{view} to reload")
        check(self.q(section).get_attribute("data-state") == "ready", f"{view} failed to reload: {self.message_text()!r}")

    def row_ids(self, tbody: str) -> list[str]:
        return [r.get_attribute("data-id") for r in self.qs(f"{tbody} tr[data-id]")]

    def fill(self, css: str, text: str) -> None:
        field = self.q(css)
        field.clear()
        field.send_keys(text)

    def expect_console(self, path: str, status: int) -> None:
        self.expected_console.append((f"{self.base}{path}", status))

    def drain_console(self, test: str) -> None:
        for entry in self.driver.get_log("browser"):
            self.console.append((test, entry))

    def set_viewport(self, width: int, height: int, mobile: bool) -> None:
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile,
        })

    def clear_viewport(self) -> None:
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # ------------------------------------------------------------ tests

    def test_headers(self) -> None:
        status, headers, body = self.api.call("GET", "/admin")
        check(status == 200, f"GET /admin answered {status}")
        check("text/html" in (headers.get("content-type") or ""), f"GET /admin content-type {headers.get('content-type')!r}")
        csp = headers.get("content-security-policy") or ""
        check("script-src 'self'" in csp, f"content-security-policy is {csp!r}")
        check("default-src 'none'" in csp, f"content-security-policy lacks default-src 'none': {csp!r}")
        check((headers.get("x-content-type-options") or "").lower() == "nosniff", f"x-content-type-options is {headers.get('x-content-type-options')!r}")
        check(isinstance(body, str) and "/admin/assets/app.js" in body, "GET /admin does not reference /admin/assets/app.js")
        for path, kind in (("/admin/assets/app.js", "javascript"), ("/admin/assets/app.css", "text/css")):
            status, headers, _ = self.api.call("GET", path)
            check(status == 200, f"GET {path} answered {status}")
            check(kind in (headers.get("content-type") or ""), f"GET {path} content-type {headers.get('content-type')!r}")

    def test_login(self) -> None:
        # What a wrong password answers, asked of an account that does not exist (same answer).
        status, _, problem = self.api.call("POST", "/auth/login", {"username": f"nobody-{uuid.uuid4().hex[:6]}", "password": "wrong password"})
        check(status == 401 and isinstance(problem, dict), f"a bad login answered {status}: {problem}")
        self.driver.get(f"{self.base}/admin")
        self.wait(lambda: self.visible("#login-form"), "the sign-in form")
        check(not self.visible("#nav"), "the navigation shows before signing in")
        self.expect_console("/auth/login", 401)
        self.login_through_form(ADMIN_USERNAME, "not the password")
        self.wait(lambda: self.visible("#message") and problem["title"] in self.message_text(), "the wrong password's problem title")
        text = self.message_text()
        if problem.get("detail"):
            check(problem["detail"] in text, f"the message lacks the problem's detail {problem['detail']!r}: {text!r}")
        check(self.q("#message").get_attribute("role") == "alert", "the message area is not role=alert")
        check(self.token() is None, "a token was stored after a failed login")
        self.login_through_form(ADMIN_USERNAME, ADMIN_PASSWORD)
        self.wait(lambda: self.visible("#view-overview") and self.q("#metric-total_orders").get_attribute("data-value") not in (None, ""), "the overview after signing in")
        check(not self.visible("#login-view"), "the sign-in form still shows")
        check(not self.visible("#message"), f"an error still shows after signing in: {self.message_text()!r}")
        check("admin" in self.q("#whoami").text, f"whoami shows {self.q('#whoami').text!r}")
        check(bool(self.token()), "no token in sessionStorage")

    def page_metrics(self) -> dict:
        return self.js("""
            const out = {};
            document.querySelectorAll('#view-overview [data-testid^="metric-"]').forEach((n) => {
              out[n.dataset.testid] = {value: n.dataset.value, text: n.textContent.trim()};
            });
            return out;""")

    def test_overview_matches_metrics(self) -> None:
        self.goto("#/overview", "overview")
        mismatch: list[str] = []

        def same() -> bool:
            status, _, api = self.api.call("GET", "/admin/metrics", token=self.admin)
            check(status == 200, f"GET /admin/metrics answered {status}: {api}")
            page = self.page_metrics()
            mismatch.clear()

            def compare(testid: str, expected) -> None:
                got = page.get(testid)
                if got is None:
                    mismatch.append(f"{testid} missing")
                elif expected is None:
                    if got["value"] != "":
                        mismatch.append(f"{testid}: page {got['value']!r}, API null")
                elif got["value"] in (None, "") or float(got["value"]) != float(expected):
                    mismatch.append(f"{testid}: page {got['value']!r}, API {expected!r}")

            for key in ("total_orders", "revenue_cents", "low_stock_count", "open_alerts", "average_processing_seconds"):
                compare(f"metric-{key}", api.get(key))
            for status_name, count in api["by_status"].items():
                compare(f"metric-status-{status_name.replace(' ', '_')}", count)
            revenue = page.get("metric-revenue_cents", {}).get("text", "")
            dollars = f"${api['revenue_cents'] // 100:,}.{api['revenue_cents'] % 100:02d}"
            if revenue != dollars:
                mismatch.append(f"revenue text {revenue!r}, expected {dollars!r}")
            if page.get("metric-total_orders", {}).get("text") != f"{api['total_orders']:,}":
                mismatch.append(f"total_orders text {page.get('metric-total_orders')}")
            if mismatch:
                self.q("#overview-refresh").click()
                return False
            return True

        try:
            WebDriverWait(self.driver, WAIT, poll_frequency=0.5).until(lambda d: same())
        except TimeoutException:
            raise Failure(f"the overview differs from GET /admin/metrics: {mismatch}") from None
        check(int(self.q("#metric-total_orders").get_attribute("data-value")) >= 3, "the overview counts fewer orders than were placed")

    def test_ship_and_deliver(self) -> None:
        order_id = self.ids["bob_order"]
        self.goto("#/orders", "orders")
        link = f'#orders-body tr[data-id="{order_id}"] a'
        self.wait(lambda: bool(self.qs(link)), "Bob's order in the orders list")
        self.q(link).click()
        self.wait(lambda: self.visible("#view-order") and self.q("#order-status").get_attribute("data-value") == "pending", "the order detail, pending")
        check(self.q("#order-total").get_attribute("data-value") == str(1299 + 899), f"order total {self.q('#order-total').get_attribute('data-value')}")
        check(self.q("#order-ship").get_attribute("disabled") is not None, "Ship is offered for a pending order")

        def press(button: str, status: str) -> None:
            self.wait(lambda: self.q(button).is_enabled(), f"{button} to be enabled")
            self.q(button).click()
            self.wait(lambda: self.q("#order-status").get_attribute("data-value") == status, f"the order to become {status}")
            check(not self.visible("#message"), f"an error after {button}: {self.message_text()!r}")

        press("#order-mark-paid", "paid")
        press("#order-ship", "shipped")
        self.wait(lambda: bool(self.qs("[data-testid='order-tracking']")) and self.q("[data-testid='order-tracking']").text.strip() not in ("", "–"), "the tracking number")
        tracking = self.q("[data-testid='order-tracking']").text.strip()
        press("#order-deliver", "delivered")
        order, headers = self.api.ok("GET", f"/admin/orders/{order_id}", token=self.admin)
        check(order["status"] == "delivered", f"the API says {order['status']}")
        check(order.get("shipment", {}).get("tracking_number") == tracking, f"tracking {tracking!r} vs API {order.get('shipment')}")
        check(headers.get("etag") == f'"{order["version"]}"', f"ETag {headers.get('etag')!r} for version {order['version']}")
        statuses = [h["status"] for h in order["history"]]
        check(statuses[-3:] == ["paid", "shipped", "delivered"], f"history statuses {statuses}")
        check(len(self.qs("#order-history-body tr")) == len(order["history"]), "the page's history differs from the API's")

    def test_stale_edit_conflict(self) -> None:
        product_id = self.ids["lamp"]
        self.goto("#/inventory", "inventory")
        row = f'#inventory-body tr[data-id="{product_id}"]'
        self.wait(lambda: bool(self.qs(row)), "the lamp's row")
        self.q(f"{row} [data-testid='product-edit']").click()
        self.wait(lambda: self.visible("#product-form"), "the edit form")
        check(self.q("#product-name").get_attribute("value") == "Desk Lamp", "the edit form is not the lamp's")
        # An edit never sets the stock: the field is read-only and points at "Adjust stock".
        check(self.q("#product-stock").get_attribute("disabled") is not None, "the stock field is editable in an edit")
        check(self.visible("#product-stock-hint") and "Adjust stock" in self.q("#product-stock-hint").text, "no hint that stock moves through Adjust stock")
        # Someone else changes the product behind the page's back.
        product, headers = self.api.ok("GET", f"/products/{product_id}", token=self.admin)
        version = product["version"]
        body = {k: product[k] for k in ("name", "description", "price_cents", "stock", "category", "low_stock_threshold")}
        body["price_cents"] = 4700
        changed, _ = self.api.ok("PUT", f"/admin/inventory/{product_id}", body, self.admin, headers={"if-match": f'"{version}"'}, expect=(200,))
        check(changed["version"] > version, f"the API's edit did not move the version: {changed}")
        # The page's user edits the description and saves on the stale version.
        typed = "LED, warm white, edited in the browser"
        description = self.q("#product-description")
        description.clear()
        description.send_keys(typed)
        self.expect_console(f"/products/{product_id}", 412)
        self.q("#product-save").click()
        self.wait(lambda: "Someone else changed this product" in self.message_text(), "the conflict message")
        check(self.q("#message").get_attribute("data-status") == "412", f"the message is not the 412: {self.message_text()!r}")
        check(self.visible("#product-form"), "the form closed after the conflict")
        check(self.q("#product-description").get_attribute("value") == typed, "the typed description was lost")
        check(self.q("#product-price").get_attribute("value") == "45.00", "the price field changed under the user")
        check(str(changed["version"]) in self.q("#product-form-version").text, f"the version shown is {self.q('#product-form-version').text!r}")
        check("$47.00" in self.q("#product-conflict").text, f"the conflict box does not show the other change: {self.q('#product-conflict').text!r}")
        # A stock move that leaves the version alone (like an order) lands before the save: the
        # save keeps it, it does not put back the stock the form was opened with.
        self.api.ok("POST", f"/admin/inventory/{product_id}/adjustments", {"delta": -1, "reason": "one broken on the shelf"}, self.admin, expect=(201,))
        # Saving again applies the user's edit over the current version.
        self.q("#product-save").click()
        self.wait(lambda: not self.visible("#product-panel") and "Saved" in self.notice_text(), "the second save")
        after, _ = self.api.ok("GET", f"/products/{product_id}", token=self.admin)
        check(after["description"] == typed and after["version"] == changed["version"] + 1, f"after the second save the API has {after}")
        check(after["stock"] == changed["stock"] - 1, f"the save moved the stock: {changed['stock']} - 1 expected, the API has {after['stock']}")

    def test_hostile_name_is_text(self) -> None:
        product_id = self.ids["xss"]
        self.goto("#/inventory", "inventory")
        cell = f'#inventory-body tr[data-id="{product_id}"] [data-testid="product-name"]'
        self.wait(lambda: bool(self.qs(cell)), "the hostile product's row")
        check(self.q(cell).text == XSS_NAME, f"the cell shows {self.q(cell).text!r}")
        check(self.js("return arguments[0].textContent;", self.q(cell)) == XSS_NAME, "the cell's textContent differs")
        check(self.js("return document.querySelectorAll('img').length;") == 0, "an <img> element was created")
        try:
            alert = self.driver.switch_to.alert
            text = alert.text
            alert.dismiss()
            raise Failure(f"an alert was shown: {text!r}")
        except NoAlertPresentException:
            pass

    def open_alerts(self) -> list:
        _, _, payload = self.api.call("GET", "/admin/alerts?acknowledged=false&limit=100", token=self.admin)
        return [a for a in payload["items"] if a["product_id"] == self.ids["kettle"]]

    def test_low_stock_alert(self) -> None:
        kettle = self.ids["kettle"]
        check(self.open_alerts() == [], f"the kettle has alerts before any order: {self.open_alerts()}")
        # 6 in stock, threshold 3: ordering 4 takes it below the threshold.
        self.ids["dee_order"] = self.place("dee", [("kettle", 4)])
        self.goto("#/alerts", "alerts")
        rows = f'#alerts-body tr[data-product-id="{kettle}"]'

        def one_alert() -> bool:
            if len(self.qs(rows)) == 1:
                return True
            self.q("#alerts-refresh").click()
            return False

        self.wait(one_alert, "one open alert for the kettle")
        check(self.q(f"{rows} [data-testid='alert-product']").text == "Kettle", "the alert names another product")
        check(len(self.open_alerts()) == 1, f"the API lists {len(self.open_alerts())} open alerts for the kettle")
        self.q(f"{rows} [data-testid='alert-ack']").click()
        self.wait(lambda: len(self.qs(rows)) == 0 and self.q("#view-alerts").get_attribute("data-state") == "ready", "the acknowledged alert to leave the open list")
        check(self.open_alerts() == [], "the API still lists the alert as open")
        _, _, done = self.api.call("GET", "/admin/alerts?acknowledged=true&limit=100", token=self.admin)
        acknowledged = [a for a in done["items"] if a["product_id"] == kettle]
        check(len(acknowledged) == 1 and acknowledged[0].get("acknowledged_at"), f"acknowledged alerts for the kettle: {acknowledged}")
        # The inventory shows the kettle as low, in words as well as colour.
        self.goto("#/inventory", "inventory")
        row = self.q(f'#inventory-body tr[data-id="{kettle}"]')
        check("low-stock" in (row.get_attribute("class") or ""), "the kettle's row is not highlighted")
        check(row.find_element(By.CSS_SELECTOR, "[data-testid='product-low']").text.strip() == "low", "the kettle's row does not say low")
        check(row.find_element(By.CSS_SELECTOR, "[data-testid='product-stock']").get_attribute("data-value") == "2", "the kettle's stock is not 2")

    def test_adjust_stock(self) -> None:
        rope = self.ids["rope"]
        before, _ = self.api.ok("GET", f"/products/{rope}", token=self.admin)
        self.goto("#/inventory", "inventory")
        row = f'#inventory-body tr[data-id="{rope}"]'
        self.wait(lambda: bool(self.qs(row)), "the rope's row")
        self.q(f"{row} [data-testid='product-adjust']").click()
        self.wait(lambda: self.visible("#adjust-form"), "the adjust form")
        reason = "Cycle count found a spare box"
        self.q("#adjust-delta").send_keys("7")
        self.q("#adjust-reason").send_keys(reason)
        self.q("#adjust-save").click()
        expected = before["stock"] + 7
        self.wait(lambda: self.q("#adjust-current").get_attribute("data-value") == str(expected), f"the stock to show {expected}")
        check(not self.visible("#message"), f"an error after adjusting: {self.message_text()!r}")
        after, _ = self.api.ok("GET", f"/products/{rope}", token=self.admin)
        check(after["stock"] == expected, f"the API's stock is {after['stock']}, expected {expected}")
        history, _ = self.api.ok("GET", f"/admin/inventory/{rope}/adjustments", token=self.admin)
        check(any(a["delta"] == 7 and a["reason"] == reason for a in history["items"]), f"the API's adjustments: {history}")
        self.wait(lambda: any(reason in r.text for r in self.qs("#adjust-history-body tr")), "the adjustment in the page's history")
        self.wait(lambda: self.q(f"{row} [data-testid='product-stock']").get_attribute("data-value") == str(expected), "the table's stock")

    def test_order_address_note_cancel(self) -> None:
        order_id = self.ids["cyd_order"]
        self.goto(f"#/orders/{order_id}", "order")
        self.wait(lambda: self.q("#order-status").get_attribute("data-value") == "pending", "Cyd's order, pending")
        failed = self.qs("#order-payments-body tr[data-status='failed']")
        check(len(failed) == 1 and "0002" in failed[0].text, f"the declined payment is not listed: {self.q('#order-payments-body').text!r}")
        # Someone else writes a note behind the page's back: the page's address change is stale.
        order, _ = self.api.ok("GET", f"/admin/orders/{order_id}", token=self.admin)
        other, _ = self.api.ok("PUT", f"/admin/orders/{order_id}", {"note": "set by someone else"}, self.admin, headers={"if-match": f'"{order["version"]}"'}, expect=(200,))
        self.q("#order-edit-address").click()
        self.wait(lambda: self.visible("#address-form"), "the address form")
        self.fill("#address-line1", "2 New Street")
        self.fill("#address-city", "Austin")
        self.fill("#address-postal_code", "73301")
        self.expect_console(f"/admin/orders/{order_id}", 412)
        self.q("#address-save").click()
        self.wait(lambda: "Someone else changed this order" in self.message_text(), "the order's conflict message")
        check(self.q("#message").get_attribute("data-status") == "412", "the conflict message is not the 412")
        check(self.visible("#address-form"), "the address form closed after the conflict")
        check(self.q("#address-line1").get_attribute("value") == "2 New Street", "the typed address was lost")
        check(self.q("#order-version").text == str(other["version"]), f"the page shows version {self.q('#order-version').text}, the order is at {other['version']}")
        check(self.q("#note-text").get_attribute("value") == "set by someone else", "the untouched note form did not follow the reloaded order")
        self.q("#address-save").click()
        self.wait(lambda: "Shipping address saved" in self.notice_text() and not self.visible("#address-form"), "the address to be saved")
        self.wait(lambda: "2 New Street" in self.q("#order-address").text, "the new address on the page")
        order, _ = self.api.ok("GET", f"/admin/orders/{order_id}", token=self.admin)
        check(order["shipping_address"]["line1"] == "2 New Street" and order["shipping_address"]["city"] == "Austin", f"the API has {order['shipping_address']}")
        check(any(h.get("change") == "shipping address corrected" for h in order["history"]), "no history entry for the address")
        # The internal note.
        self.fill("#note-text", "Customer asked us to hold it")
        self.q("#note-save").click()
        self.wait(lambda: "Note saved" in self.notice_text(), "the note to be saved")
        order, _ = self.api.ok("GET", f"/admin/orders/{order_id}", token=self.admin)
        check(order.get("admin_note") == "Customer asked us to hold it", f"the API's note is {order.get('admin_note')!r}")
        mine, _ = self.api.ok("GET", f"/orders/{order_id}", token=self.tokens["cyd"])
        check("admin_note" not in mine, "the customer sees the internal note")
        # Cancel: a reason is required, then the order is cancelled with it.
        self.q("#order-cancel").click()
        self.wait(lambda: self.visible("#cancel-form"), "the cancel form")
        self.q("#cancel-confirm").click()
        self.wait(lambda: self.q("#cancel-reason").get_attribute("aria-invalid") == "true", "the missing reason to be flagged")
        check(self.q("#order-status").get_attribute("data-value") == "pending", "the order changed without a reason")
        self.fill("#cancel-reason", "Customer changed their mind")
        self.q("#cancel-confirm").click()
        self.wait(lambda: self.q("#order-status").get_attribute("data-value") == "cancelled", "the order to be cancelled")
        order, _ = self.api.ok("GET", f"/admin/orders/{order_id}", token=self.admin)
        check(order["status"] == "cancelled" and order.get("cancel_reason") == "Customer changed their mind", f"the API has {order['status']}, {order.get('cancel_reason')!r}")
        check(all(self.q(b).get_attribute("disabled") is not None for b in ("#order-ship", "#order-deliver", "#order-cancel", "#order-mark-paid")), "actions are still offered on a cancelled order")

    def test_create_and_delete_product(self) -> None:
        self.goto("#/inventory", "inventory")
        self.q("#product-new").click()
        self.wait(lambda: self.visible("#product-form"), "the new-product form")
        check(self.q("#product-form-title").text == "New product", f"the form is titled {self.q('#product-form-title').text!r}")
        check(self.q("#product-stock").get_attribute("disabled") is None and not self.visible("#product-stock-hint"), "a new product's stock cannot be typed")
        self.fill("#product-name", "Test Teapot")
        self.fill("#product-description", "Porcelain, 1 l")
        self.fill("#product-price", "abc")
        self.fill("#product-stock", "3")
        self.fill("#product-category", "kitchen")
        self.fill("#product-threshold", "1")
        self.q("#product-save").click()
        self.wait(lambda: self.q("#product-price").get_attribute("aria-invalid") == "true", "the bad price to be flagged")
        # The server's validation: a category that is not a slug answers 422 naming the field.
        self.fill("#product-price", "19.5")
        self.fill("#product-category", "Not A Slug!")
        self.expect_console("/admin/inventory", 422)
        self.q("#product-save").click()
        self.wait(lambda: self.q("#message").get_attribute("data-status") == "422", "the 422 problem")
        check("category" in self.message_text(), f"the 422 message does not name the category: {self.message_text()!r}")
        check(self.q("#product-category").get_attribute("aria-invalid") == "true", "the category field is not flagged")
        check(self.q("#product-price").get_attribute("aria-invalid") is None, "the corrected price is still flagged")
        self.fill("#product-category", "kitchen")
        self.q("#product-save").click()
        self.wait(lambda: not self.visible("#product-panel") and "Created" in self.notice_text(), "the product to be created")
        name_cells = "#inventory-body [data-testid='product-name']"
        self.wait(lambda: any(c.text == "Test Teapot" for c in self.qs(name_cells)), "the new product's row")
        row = next(c for c in self.qs(name_cells) if c.text == "Test Teapot").find_element(By.XPATH, "./ancestor::tr")
        product_id = row.get_attribute("data-id")
        product, _ = self.api.ok("GET", f"/products/{product_id}")
        check((product["price_cents"], product["stock"], product["low_stock_threshold"]) == (1950, 3, 1), f"the API has {product}")
        row.find_element(By.CSS_SELECTOR, "[data-testid='product-delete']").click()
        self.wait(lambda: self.visible("#delete-panel") and "Test Teapot" in self.q("#delete-question").text, "the delete confirmation")
        check(product_id in self.row_ids("#inventory-body"), "the row went before confirming")
        self.q("#delete-confirm").click()
        self.wait(lambda: "Deleted" in self.notice_text() and product_id not in self.row_ids("#inventory-body"), "the row to go")
        status, _, _ = self.api.call("GET", f"/products/{product_id}")
        check(status == 404, f"the deleted product answers {status}")

    def test_filters_and_paging(self) -> None:
        self.goto("#/orders", "orders")
        Select(self.q("#orders-status")).select_by_value("delivered")
        self.reloads("orders", lambda: self.q("#orders-apply").click())
        check("status=delivered" in self.driver.current_url, f"the filter is not in the address: {self.driver.current_url}")
        statuses = [r.get_attribute("data-status") for r in self.qs("#orders-body tr[data-id]")]
        check(statuses and set(statuses) == {"delivered"} and self.ids["bob_order"] in self.row_ids("#orders-body"), f"delivered filter shows {statuses}")
        # Dates: placed from today shows every order; up to yesterday none.
        self.reloads("orders", lambda: self.q("#orders-reset").click())
        every = self.row_ids("#orders-body")
        check(len(every) >= 4, f"the orders list shows {len(every)} orders")
        today = self.js("const d = new Date(); return [d.getFullYear(), String(d.getMonth() + 1).padStart(2, '0'), String(d.getDate()).padStart(2, '0')].join('-');")
        yesterday = self.js("const d = new Date(Date.now() - 86400000); return [d.getFullYear(), String(d.getMonth() + 1).padStart(2, '0'), String(d.getDate()).padStart(2, '0')].join('-');")
        self.js("document.getElementById('orders-from').value = arguments[0];", today)
        self.reloads("orders", lambda: self.q("#orders-apply").click())
        check(sorted(self.row_ids("#orders-body")) == sorted(every), "placed-from-today hides orders placed today")
        self.js("document.getElementById('orders-from').value = ''; document.getElementById('orders-to').value = arguments[0];", yesterday)
        self.reloads("orders", lambda: self.q("#orders-apply").click())
        check(self.row_ids("#orders-body") == [], "placed-up-to-yesterday shows today's orders")
        # Payments: the failed filter shows Cyd's declined card.
        self.goto("#/payments?status=failed", "payments")
        rows = self.qs("#payments-body tr[data-id]")
        check(len(rows) == 1 and rows[0].get_attribute("data-status") == "failed" and "0002" in rows[0].text, f"failed payments: {[r.text for r in rows]}")
        # Customers: everyone who signed up.
        self.goto("#/customers", "customers")
        check(sorted(self.row_ids("#customers-body")) == sorted(self.ids[k] for k in ("ada", "bob", "cyd", "dee")), "the customers list differs")
        # Finding a customer by the email they write from, in any letter case.
        self.fill("#customers-email", self.emails["bob"].upper())
        self.reloads("customers", lambda: self.q("#customers-apply").click())
        check(self.row_ids("#customers-body") == [self.ids["bob"]], f"finding Bob by email: {self.row_ids('#customers-body')}")
        check("email=" in self.js("return location.hash;"), "the search is not in the address bar")
        self.fill("#customers-email", "nobody@example.com")
        self.reloads("customers", lambda: self.q("#customers-apply").click())
        check(self.row_ids("#customers-body") == [], "an unknown email finds someone")
        check("No customer signs in with this email" in self.q("#customers-body").text, f"empty search: {self.q('#customers-body').text!r}")
        self.reloads("customers", lambda: self.q("#customers-reset").click())
        check(len(self.row_ids("#customers-body")) == 4 and self.q("#customers-email").get_attribute("value") == "", "Clear does not list everyone again")
        # A search opened from its address (a link, a bookmark) fills the form and filters.
        self.goto(f"#/customers?email={urllib.parse.quote(self.emails['cyd'])}", "customers")
        check(self.q("#customers-email").get_attribute("value") == self.emails["cyd"], "the form does not show the search")
        check(self.row_ids("#customers-body") == [self.ids["cyd"]], f"the address's search: {self.row_ids('#customers-body')}")
        # Paging through next_token, three products a page.
        self.goto("#/inventory?limit=3", "inventory")
        first = self.row_ids("#inventory-body")
        check(len(first) == 3 and self.q("#inventory-next").is_enabled(), f"page 1 has {len(first)} rows")
        self.reloads("inventory", lambda: self.q("#inventory-next").click())
        second = self.row_ids("#inventory-body")
        check(len(second) >= 1 and not set(first) & set(second), f"page 2 repeats page 1: {first} / {second}")
        check(self.q("#inventory-prev").is_enabled(), "no way back to page 1")
        self.reloads("inventory", lambda: self.q("#inventory-prev").click())
        check(self.row_ids("#inventory-body") == first, "page 1 differs the second time")

    def test_layout(self) -> None:
        self.ensure_logged_in()
        hashes = [(f"#/{v}", v) for v in VIEWS] + [(f"#/orders/{self.ids['ada_order']}", "order")]
        try:
            for width, height, mobile in ((375, 812, True), (1280, 900, False)):
                self.set_viewport(width, height, mobile)
                for hash_, view in hashes:
                    self.goto(hash_, view)
                    inner = self.js("return window.innerWidth;")
                    check(inner == width, f"the viewport is {inner} px wide, not {width}")
                    scroll = self.js("return document.documentElement.scrollWidth;")
                    check(scroll <= width + 1, f"{hash_} at {width} px scrolls sideways: scrollWidth {scroll}")
                    nav = self.q("#nav").rect
                    check(nav["x"] >= 0 and nav["x"] + nav["width"] <= width + 1, f"the navigation overflows at {width} px: {nav}")
                self.goto("#/inventory", "inventory")
                self.q(f'#inventory-body tr[data-id="{self.ids["mug"]}"] [data-testid="product-edit"]').click()
                self.wait(lambda: self.visible("#product-form"), "the edit form")
                scroll = self.js("return document.documentElement.scrollWidth;")
                check(scroll <= width + 1, f"the product form at {width} px scrolls sideways: {scroll}")
                self.q("#product-cancel").click()
        finally:
            self.clear_viewport()

    def test_account_password_and_sessions(self) -> None:
        """An admin changes their password (the page keeps its session, every other one ends),
        then signs out everywhere, and sets the password back for the tests after."""
        changed = "a new admin passphrase 2"
        self.goto("#/account", "account")
        other_device = self.api.login({"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})

        def submit(current: str, new: str, repeat: str) -> None:
            self.fill("#password-current", current)
            self.fill("#password-new", new)
            self.fill("#password-repeat", repeat)
            self.q("#password-save").click()

        submit(ADMIN_PASSWORD, changed, changed + "!")
        self.wait(lambda: self.q("#password-repeat").get_attribute("aria-invalid") == "true", "the mismatched repeat marked")
        self.expect_console("/auth/password", 422)
        submit("not the password", changed, changed)
        self.wait(lambda: self.q("#password-current").get_attribute("aria-invalid") == "true"
                  and "current_password" in self.message_text(), "the wrong current password named by the server")
        before = self.token()
        submit(ADMIN_PASSWORD, changed, changed)
        self.wait(lambda: "password is changed" in self.notice_text(), "the notice of the change")
        check(bool(self.token()) and self.token() != before, "the page did not take the token the change answered")
        check(self.q("#password-current").get_attribute("value") in ("", None), "the form kept the passwords typed")
        for stale in (before, other_device):
            status, _, _ = self.api.call("GET", "/admin/metrics", token=stale)
            check(status == 401, f"a session from before the change still works: {status}")
        self.goto("#/overview", "overview")

        self.goto("#/account", "account")
        current = self.token()
        self.q("#logout-everywhere").click()
        self.wait(lambda: self.visible("#login-form") and "signed out everywhere" in self.notice_text(), "the sign-in form after signing out everywhere")
        check(self.token() is None, "the token is still in sessionStorage")
        status, _, _ = self.api.call("GET", "/admin/metrics", token=current)
        check(status == 401, f"the page's own token still works after signing out everywhere: {status}")
        self.login_through_form(ADMIN_USERNAME, changed)
        self.wait(lambda: self.visible("#view-overview"), "the overview after signing in with the new password")

        self.goto("#/account", "account")
        submit(changed, ADMIN_PASSWORD, ADMIN_PASSWORD)
        self.wait(lambda: "password is changed" in self.notice_text(), "the password set back")
        self.admin = self.api.login({"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})

    def test_logout_and_expired_session(self) -> None:
        self.ensure_logged_in()
        self.goto("#/orders", "orders")
        old = self.token()
        self.q("#logout").click()
        self.wait(lambda: self.visible("#login-form") and not self.visible("#nav"), "the sign-in form after logging out")
        check(self.token() is None, "the token is still in sessionStorage")
        check("signed out" in self.notice_text(), f"the notice says {self.notice_text()!r}")
        status, _, _ = self.api.call("GET", "/admin/metrics", token=old)
        check(status == 401, f"the logged-out token still works: {status}")
        # A token the server refuses (401 on any call) brings the sign-in screen back, with a message.
        self.expect_console("/admin/orders?limit=20", 401)
        self.js("sessionStorage.setItem('orderly.admin.token', arguments[0]);", old)
        self.driver.get(f"{self.base}/admin#/orders")
        self.wait(lambda: self.visible("#login-form") and "sign in again" in self.message_text().lower(), "the sign-in form after a 401")
        check(self.token() is None, "the refused token was kept")
        self.login_through_form(ADMIN_USERNAME, ADMIN_PASSWORD)
        self.wait(lambda: self.visible("#view-orders") and self.q("#view-orders").get_attribute("data-state") == "ready", "the orders view again after signing in")

    def test_docs_page(self) -> None:
        """/docs renders the OpenAPI document with nothing fetched from anywhere but the server."""
        # Swagger UI's page names no icon, so the browser asks for /favicon.ico, which is no route.
        self.expect_console("/favicon.ico", 404)
        self.driver.get(f"{self.base}/docs")
        self.wait(lambda: "Orderly" in self.js("return (document.querySelector('.info .title') || {}).textContent || '';"),
                  "the docs page's title")
        self.wait(lambda: self.js("return document.querySelectorAll('.opblock').length;") >= 40, "the documented operations")
        fetched = self.js("return performance.getEntriesByType('resource').map(e => e.name);")
        outside = [url for url in fetched if not url.startswith(self.base)]
        check(not outside, f"the docs page fetched from elsewhere: {outside}")
        check(any(url.endswith("/openapi.json") for url in fetched), f"the docs page did not load /openapi.json: {fetched}")

    def test_no_console_errors(self) -> None:
        self.drain_console("test_no_console_errors")
        unexpected = []
        for test, entry in self.console:
            if entry.get("level") != "SEVERE":
                continue
            message = entry.get("message", "")
            if any(self.is_logged(message, url, status) for url, status in self.expected_console):
                continue
            unexpected.append(f"[{test}] {message}")
        check(not unexpected, "console errors:\n    " + "\n    ".join(unexpected))
        seen = [e.get("message", "") for _, e in self.console if e.get("level") == "SEVERE"]
        for url, status in self.expected_console:
            check(any(self.is_logged(m, url, status) for m in seen), f"the deliberate {status} from {url} was not logged (is the filter stale?)")

    @staticmethod
    def is_logged(message: str, url: str, status: int) -> bool:
        """Chromium logs a failed fetch as `<url> - Failed to load resource: the server responded
        with a status of <code> (<reason>)`: the URL and the code must both be the expected ones."""
        return message.split(" - ", 1)[0] == url and f"responded with a status of {status} " in message

    # ------------------------------------------------------------ screenshots

    def screenshots(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ensure_logged_in()
        try:
            for name, width, height, mobile in (("dashboard-desktop.png", 1280, 900, False), ("dashboard-phone.png", 375, 812, True)):
                self.set_viewport(width, height, mobile)
                self.goto("#/overview", "overview")
                self.js("window.scrollTo(0, 0);")
                self.driver.save_screenshot(str(directory / name))
                print(f"saved {directory / name}")
        finally:
            self.clear_viewport()


TESTS = [
    "test_headers",
    "test_login",
    "test_overview_matches_metrics",
    "test_ship_and_deliver",
    "test_stale_edit_conflict",
    "test_hostile_name_is_text",
    "test_low_stock_alert",
    "test_adjust_stock",
    "test_order_address_note_cancel",
    "test_create_and_delete_product",
    "test_filters_and_paging",
    "test_layout",
    "test_account_password_and_sessions",
    "test_logout_and_expired_session",
    "test_docs_page",
    "test_no_console_errors",
]


def start_driver():
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run", "--disable-extensions", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshots", type=Path, help="save dashboard-desktop.png and dashboard-phone.png here")
    parser.add_argument("--only", action="append", help="run only these tests (and what they need)")
    args = parser.parse_args()
    for path in (SERVER, Path(CHROMIUM), Path(CHROMEDRIVER)):
        if not path.exists():
            print(f"missing {path} (cargo build -p orderly-local; scripts/setup-tools.sh installs chromium)", file=sys.stderr)
            return 1

    started = time.monotonic()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        env = {
            **os.environ,
            "ORDERLY_ADDR": f"127.0.0.1:{port}",
            "ORDERLY_DATA_DIR": str(data),
            "ORDERLY_ADMIN_USERNAME": ADMIN_USERNAME,
            "ORDERLY_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "RUST_LOG": "warn",
        }
        env.pop("ORDERLY_STORE", None)
        log_path = data / "server.log"
        log = open(log_path, "w")
        server = subprocess.Popen([str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT)
        driver = None
        results: list[tuple[str, bool, str]] = []
        try:
            for _ in range(150):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if server.poll() is not None:
                        break
                    time.sleep(0.1)
            api = Api(base)
            driver = start_driver()
            run = Run(base, api, driver, data)
            try:
                run.seed()
            except Exception as error:  # noqa: BLE001 - reported as a failed test
                results.append(("seed data through the API", False, f"{error}"))
            else:
                for name in TESTS:
                    if args.only and name not in args.only and name not in ("test_no_console_errors",):
                        continue
                    t0 = time.monotonic()
                    try:
                        getattr(run, name)()
                        results.append((name, True, f"{time.monotonic() - t0:.1f}s"))
                    except Failure as error:
                        results.append((name, False, str(error)))
                    except Exception:  # noqa: BLE001 - a crash in a test is a failure of that test
                        results.append((name, False, traceback.format_exc(limit=4)))
                    try:
                        run.drain_console(name)
                    except Exception:  # noqa: BLE001
                        pass
                    if not results[-1][1]:
                        shot = data.parent / f"browser-test-{name}.png"
                        try:
                            driver.save_screenshot(str(shot))
                            results[-1] = (name, False, results[-1][2] + f"\n    (screenshot: {shot})")
                        except Exception:  # noqa: BLE001
                            pass
                if args.screenshots:
                    run.screenshots(args.screenshots)
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
        failed = [r for r in results if not r[1]]
        for name, ok, info in results:
            print(f"{'PASS' if ok else 'FAIL'}  {name}  {info if ok else ''}".rstrip())
            if not ok:
                print(f"    {info}")
        if failed:
            print("--- server log tail ---\n" + log_path.read_text()[-3000:])
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed ({time.monotonic() - started:.1f}s)")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
