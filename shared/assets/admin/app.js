"use strict";
// Orderly admin dashboard: one file, no framework, no build step.
// Served under a strict CSP (script-src 'self', style-src 'self'): no inline handlers, no inline
// styles, no eval. Every piece of data is rendered as text (createElement + textContent), never
// as markup: product names, addresses and reasons come from users.

(() => {
  const TOKEN_KEY = "orderly.admin.token";
  const ROLE_KEY = "orderly.admin.role";
  const USER_KEY = "orderly.admin.user";
  const EXPIRES_KEY = "orderly.admin.expires";
  const PAGE_SIZE = 20;
  // Rows per page: 20, or `limit` (1-100) in the view's address, e.g. #/inventory?limit=50.
  let pageSize = PAGE_SIZE;

  function takePageSize(params) {
    const n = Number(params.get("limit"));
    pageSize = Number.isInteger(n) && n >= 1 && n <= 100 ? n : PAGE_SIZE;
  }

  // A list view's address for these filters, keeping a chosen page size.
  function listHash(view, params) {
    if (pageSize !== PAGE_SIZE) params.set("limit", String(pageSize));
    const qs = params.toString();
    return qs ? `#/${view}?${qs}` : `#/${view}`;
  }
  const ORDER_STATUSES = ["processing order", "pending", "paid", "shipped", "delivered", "cancelled"];
  const CANCELLABLE = ["processing order", "pending", "paid"];
  const ADDRESS_EDITABLE = ["processing order", "pending", "paid"];

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helpers

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) {
      child.forEach((c) => append(node, c));
    } else if (child instanceof Node) {
      node.appendChild(child);
    } else {
      node.appendChild(document.createTextNode(String(child)));
    }
  }

  // el("td", {class: "num", "data-value": 3}, "text", otherNode): attributes are set with
  // setAttribute and children become text nodes, so nothing is ever parsed as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = String(value);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    append(node, children);
    return node;
  }

  function setText(id, value) {
    $(id).textContent = value === null || value === undefined ? "" : String(value);
  }

  function slug(value) {
    return String(value).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  }

  function statusBadge(status) {
    return el("span", { class: `status status-${slug(status)}`, "data-value": status }, status);
  }

  // Ids are UUIDv7: the head is a timestamp shared by everything made the same minute, so
  // the tail is what tells two apart.
  function shortId(id) {
    const s = String(id || "");
    return s.length > 13 ? `…${s.slice(-8)}` : s;
  }

  function emptyRow(tbody, columns, message) {
    tbody.replaceChildren(el("tr", null, el("td", { class: "empty", colspan: columns }, message)));
  }

  function setViewState(section, state) {
    section.dataset.state = state;
    section.setAttribute("aria-busy", state === "loading" ? "true" : "false");
  }

  function setBusy(form, busy) {
    const fieldset = form.querySelector("fieldset");
    if (fieldset) fieldset.disabled = busy;
    form.setAttribute("aria-busy", busy ? "true" : "false");
  }

  // On phones the tables stack into labelled cards (CSS: td::before { content: attr(data-label) }):
  // every cell gets its column's heading as data-label whenever a table body is re-rendered.
  function labelCells(tbody) {
    const table = tbody.closest("table");
    const headings = Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent.trim());
    tbody.querySelectorAll("tr").forEach((row) => {
      let column = 0;
      Array.from(row.cells).forEach((cell) => {
        if (headings[column]) cell.setAttribute("data-label", headings[column]);
        column += cell.colSpan || 1;
      });
    });
  }

  // ---------------------------------------------------------------- formatting

  const moneyFormat = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  const intFormat = new Intl.NumberFormat("en-US");
  const dateFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });

  function money(cents) {
    if (typeof cents !== "number" || !Number.isFinite(cents)) return "–";
    return moneyFormat.format(cents / 100);
  }

  function int(n) {
    if (typeof n !== "number" || !Number.isFinite(n)) return "–";
    return intFormat.format(n);
  }

  function when(iso) {
    if (!iso) return el("span", { class: "muted" }, "–");
    const date = new Date(iso);
    const label = Number.isNaN(date.getTime()) ? String(iso) : dateFormat.format(date);
    return el("time", { datetime: iso, title: iso, class: "nowrap" }, label);
  }

  function duration(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "n/a";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  function centsToInput(cents) {
    if (typeof cents !== "number") return "";
    const sign = cents < 0 ? "-" : "";
    const abs = Math.abs(cents);
    return `${sign}${Math.trunc(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
  }

  // "12.5" -> 1250, "$1,299.00" -> 129900; null when it is not an amount.
  function parseMoney(text) {
    const t = text.trim().replace(/^\$/, "").replace(/,/g, "");
    const m = /^(\d{1,13})(?:\.(\d{0,2}))?$/.exec(t);
    if (!m) return null;
    return Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
  }

  function parseInteger(text) {
    const t = text.trim();
    if (!/^[-+]?\d{1,15}$/.test(t)) return null;
    const n = Number(t);
    return Number.isSafeInteger(n) ? n : null;
  }

  function dateStart(day) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || "");
    if (!m) return undefined;
    return rfc3339(new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), 0, 0, 0));
  }

  function dateEnd(day) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || "");
    if (!m) return undefined;
    return rfc3339(new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), 23, 59, 59));
  }

  function rfc3339(date) {
    return date.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function addressLines(address) {
    if (!address) return [];
    const cityLine = [address.city, address.region, address.postal_code].filter(Boolean).join(", ");
    return [address.line1, address.line2, cityLine, address.country].filter(Boolean);
  }

  // ---------------------------------------------------------------- messages

  function clearMessages() {
    const message = $("message");
    message.hidden = true;
    message.classList.remove("message-conflict");
    message.replaceChildren();
    state.lastProblem = null;
    const notice = $("notice");
    notice.hidden = true;
    notice.replaceChildren();
  }

  // problem: {title, detail, status, errors: [{field, message}], current_version}
  function showError(problem, options = {}) {
    const message = $("message");
    const parts = [];
    const title = options.title || problem.title || "Something went wrong";
    parts.push(el("strong", { "data-testid": "message-title" }, title));
    if (options.lead) parts.push(el("p", { "data-testid": "message-lead" }, options.lead));
    if (problem.detail) parts.push(el("p", { "data-testid": "message-detail" }, problem.detail));
    if (Array.isArray(problem.errors) && problem.errors.length) {
      parts.push(el("ul", { "data-testid": "message-errors" },
        problem.errors.map((e) => el("li", null, e.field ? `${e.field}: ${e.message}` : String(e.message)))));
    }
    if (problem.status && !options.title) {
      parts.push(el("p", { class: "small muted" }, `HTTP ${problem.status}`));
    }
    state.lastProblem = problem;
    message.replaceChildren(...parts);
    message.classList.toggle("message-conflict", Boolean(options.conflict));
    message.dataset.status = problem.status ? String(problem.status) : "";
    message.hidden = false;
    $("notice").hidden = true;
    message.scrollIntoView({ block: "nearest" });
  }

  function showProblem(error) {
    if (error && error.handled) return;
    if (error instanceof ApiError) {
      showError(error.problem);
    } else {
      showError({ title: "Unexpected error in the page", detail: String(error && error.message ? error.message : error) });
      // Keep the trace for whoever opens the console.
      console.warn(error);
    }
  }

  function showNotice(text) {
    const notice = $("notice");
    notice.replaceChildren(el("span", null, text));
    notice.hidden = false;
  }

  function clearFieldErrors(form) {
    form.querySelectorAll("[aria-invalid]").forEach((input) => {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    });
    form.querySelectorAll(".field-error").forEach((node) => node.remove());
  }

  // Marks the inputs named by a problem's errors. An input's data-field is the API field name;
  // "shipping_address.city" matches data-field "city".
  function markFieldErrors(form, errors) {
    if (!Array.isArray(errors)) return;
    const inputs = Array.from(form.querySelectorAll("[data-field]"));
    let first = null;
    for (const error of errors) {
      const field = String(error.field || "");
      const last = field.split(/[.[\]/]/).filter(Boolean).pop() || field;
      const input = inputs.find((i) => i.dataset.field === field) || inputs.find((i) => i.dataset.field === last);
      if (!input) continue;
      input.setAttribute("aria-invalid", "true");
      const id = `${input.id}-error`;
      let note = $(id);
      if (!note) {
        note = el("div", { id, class: "field-error" });
        input.insertAdjacentElement("afterend", note);
      }
      note.textContent = error.message || "invalid";
      input.setAttribute("aria-describedby", id);
      if (!first) first = input;
    }
    if (first) first.focus();
  }

  function clientInvalid(form, errors) {
    clearFieldErrors(form);
    showError({ title: "Check the highlighted fields", errors });
    markFieldErrors(form, errors);
  }

  // ---------------------------------------------------------------- session

  function store(key, value) {
    try {
      if (value === null) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, value);
    } catch (_) {
      /* storage unavailable: the session lasts as long as the page */
    }
  }

  function stored(key) {
    try {
      return sessionStorage.getItem(key);
    } catch (_) {
      return null;
    }
  }

  let expiryTimer = null;

  function token() {
    return stored(TOKEN_KEY);
  }

  function setSession(data, username) {
    store(TOKEN_KEY, data.access_token);
    store(ROLE_KEY, data.role || "");
    store(USER_KEY, username);
    const ttl = Number(data.expires_in);
    if (Number.isFinite(ttl) && ttl > 0) store(EXPIRES_KEY, String(Date.now() + ttl * 1000));
    else store(EXPIRES_KEY, null);
    scheduleExpiry();
  }

  function clearSession() {
    [TOKEN_KEY, ROLE_KEY, USER_KEY, EXPIRES_KEY].forEach((key) => store(key, null));
    if (expiryTimer) clearTimeout(expiryTimer);
    expiryTimer = null;
  }

  function scheduleExpiry() {
    if (expiryTimer) clearTimeout(expiryTimer);
    expiryTimer = null;
    const expires = Number(stored(EXPIRES_KEY));
    if (!expires) return;
    const left = expires - Date.now();
    if (left <= 0) {
      sessionEnded({ title: "Your session expired" });
      return;
    }
    expiryTimer = setTimeout(() => sessionEnded({ title: "Your session expired" }), Math.min(left, 2 ** 31 - 1));
  }

  // A 401 (or the token's lifetime running out): back to the sign-in screen, with a message.
  function sessionEnded(problem) {
    clearSession();
    const hash = location.hash;
    state.returnTo = hash && hash.startsWith("#/") ? hash : "#/overview";
    showLoginScreen();
    showError(problem, { title: "Please sign in again", lead: `Your session has ended: ${problem.title || "the server refused the token"}.` });
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, problem) {
      super(problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
      this.handled = false;
    }
  }

  function parseEtag(value) {
    if (!value) return null;
    const m = /^"(\d+)"$/.exec(value.trim());
    return m ? Number(m[1]) : null;
  }

  async function api(method, path, options = {}) {
    const headers = { accept: "application/json, application/problem+json" };
    const bearer = options.anonymous ? null : token();
    if (bearer) headers.authorization = `Bearer ${bearer}`;
    let body;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    if (options.ifMatch !== undefined && options.ifMatch !== null) headers["if-match"] = `"${options.ifMatch}"`;
    let url = path;
    if (options.query) {
      const query = new URLSearchParams();
      for (const [key, value] of Object.entries(options.query)) {
        if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
      }
      const qs = query.toString();
      if (qs) url += `?${qs}`;
    }
    let response;
    try {
      response = await fetch(url, { method, headers, body, cache: "no-store", credentials: "same-origin", redirect: "error" });
    } catch (_) {
      throw new ApiError(0, { title: "The server could not be reached", detail: "Check the connection and try again." });
    }
    let text = "";
    try {
      text = await response.text();
    } catch (_) {
      text = "";
    }
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (!response.ok) {
      const problem = data && typeof data === "object" && !Array.isArray(data)
        ? data
        : { title: response.statusText || "Request failed", detail: text ? text.slice(0, 300) : "" };
      if (!problem.status) problem.status = response.status;
      if (!problem.title) problem.title = `Request failed (${response.status})`;
      const error = new ApiError(response.status, problem);
      if (response.status === 401 && bearer && !options.keepSessionOn401) {
        error.handled = true;
        sessionEnded(problem);
      }
      throw error;
    }
    return { data, status: response.status, version: parseEtag(response.headers.get("etag")) };
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- paging

  class Pager {
    constructor(prefix, load) {
      this.prefix = prefix;
      this.load = load;
      this.reset();
      $(`${prefix}-prev`).addEventListener("click", () => {
        if (this.index > 0) {
          this.index -= 1;
          this.load();
        }
      });
      $(`${prefix}-next`).addEventListener("click", () => {
        if (!this.next) return;
        this.tokens.length = this.index + 1;
        this.tokens.push(this.next);
        this.index += 1;
        this.load();
      });
    }

    reset() {
      this.tokens = [null];
      this.index = 0;
      this.next = null;
    }

    get token() {
      return this.tokens[this.index] || undefined;
    }

    update(nextToken, count) {
      this.next = nextToken || null;
      $(`${this.prefix}-prev`).disabled = this.index === 0;
      $(`${this.prefix}-next`).disabled = !this.next;
      const page = `Page ${this.index + 1}`;
      setText(`${this.prefix}-page`, count === undefined ? page : `${page} · ${count} shown`);
    }
  }

  // ---------------------------------------------------------------- state and routing

  const state = {
    returnTo: null,
    lastProblem: null,
    seq: {},
    order: null,
    orderFormsFor: null,
    products: new Map(),
    editing: null,
    adjusting: null,
    adjustPager: { next: null },
    deleting: null,
  };

  function nextSeq(name) {
    state.seq[name] = (state.seq[name] || 0) + 1;
    return state.seq[name];
  }

  function current(name, seq) {
    return state.seq[name] === seq;
  }

  function parseHash() {
    const hash = location.hash || "";
    if (!hash.startsWith("#/")) return null;
    const rest = hash.slice(2);
    const q = rest.indexOf("?");
    const path = q === -1 ? rest : rest.slice(0, q);
    const params = new URLSearchParams(q === -1 ? "" : rest.slice(q + 1));
    let parts;
    try {
      parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    } catch (_) {
      parts = [];
    }
    return { parts, params };
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function showLoginScreen() {
    $("nav").hidden = true;
    $("session-box").hidden = true;
    document.querySelectorAll("main .view").forEach((section) => {
      section.hidden = true;
    });
    $("login-view").hidden = false;
    $("login-password").value = "";
    state.order = null;
    state.orderFormsFor = null;
    document.title = "Sign in · Orderly admin";
    const username = $("login-username");
    if (!username.value) username.focus();
    else $("login-password").focus();
  }

  function showApp() {
    $("login-view").hidden = true;
    $("nav").hidden = false;
    $("session-box").hidden = false;
    const user = stored(USER_KEY) || "";
    const role = stored(ROLE_KEY) || "";
    setText("whoami", role ? `${user} (${role})` : user);
  }

  const VIEWS = {};

  function route() {
    if (!token()) {
      if (location.hash.startsWith("#/")) state.returnTo = location.hash;
      showLoginScreen();
      return;
    }
    const parsed = parseHash();
    if (!parsed) {
      if (!location.hash || location.hash === "#") go("#/overview");
      return;
    }
    let name = parsed.parts[0] || "overview";
    let id = null;
    if (name === "orders" && parsed.parts[1]) {
      name = "order";
      id = parsed.parts[1];
    }
    if (!VIEWS[name]) {
      go("#/overview");
      return;
    }
    showApp();
    clearMessages();
    document.querySelectorAll("main .view").forEach((section) => {
      section.hidden = section.dataset.view !== name;
    });
    const navName = name === "order" ? "orders" : name;
    document.querySelectorAll("#nav a").forEach((link) => {
      if (link.dataset.route === navName) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    });
    takePageSize(parsed.params);
    const heading = document.querySelector(`#view-${name} h1`);
    document.title = `${heading ? heading.textContent : "Admin"} · Orderly admin`;
    VIEWS[name]({ id, params: parsed.params });
  }

  // ---------------------------------------------------------------- sign in / out

  async function onLogin(event) {
    event.preventDefault();
    const form = $("login-form");
    clearMessages();
    clearFieldErrors(form);
    const username = $("login-username").value.trim();
    const password = $("login-password").value;
    if (!username || !password) {
      showError({ title: "Enter your username and password." });
      (username ? $("login-password") : $("login-username")).focus();
      return;
    }
    setBusy(form, true);
    try {
      const { data } = await api("POST", "/auth/login", { body: { username, password }, anonymous: true });
      if (!data || !data.access_token) {
        showError({ title: "The server answered the sign-in without a token." });
        return;
      }
      if (data.role !== "admin") {
        // Not for this page: give the token back at once.
        await fetch("/auth/logout", { method: "POST", headers: { authorization: `Bearer ${data.access_token}` } }).catch(() => {});
        showError({ title: "This account is not an administrator", detail: "The back office is for admin accounts only." });
        return;
      }
      setSession(data, username);
      $("login-password").value = "";
      const target = state.returnTo || "#/overview";
      state.returnTo = null;
      go(target);
    } catch (error) {
      $("login-password").value = "";
      showProblem(error);
      $("login-password").focus();
    } finally {
      setBusy(form, false);
    }
  }

  async function onLogout() {
    const button = $("logout");
    button.disabled = true;
    let failure = null;
    try {
      if (token()) await api("POST", "/auth/logout", { keepSessionOn401: true });
    } catch (error) {
      // 401: the token was already gone, which is what we want.
      if (error.status !== 401) failure = error;
    } finally {
      button.disabled = false;
    }
    showSignedOut();
    if (failure) {
      showError(failure.problem, { lead: "Signing out on the server failed; the token was forgotten on this device." });
    } else {
      showNotice("You are signed out.");
    }
  }

  // Forgets the session on this device and shows the sign-in form, with no message yet.
  function showSignedOut() {
    clearSession();
    state.returnTo = null;
    history.replaceState(null, "", "#/overview");
    showLoginScreen();
    clearMessages();
  }

  // ---------------------------------------------------------------- overview

  function setMetric(id, raw, text) {
    const node = $(id);
    node.textContent = text;
    node.dataset.value = raw === null || raw === undefined ? "" : String(raw);
  }

  async function loadOverview() {
    const section = $("view-overview");
    const seq = nextSeq("overview");
    setViewState(section, "loading");
    try {
      const [{ data }, recent] = await Promise.all([
        api("GET", "/admin/metrics"),
        api("GET", "/admin/orders", { query: { limit: 5 } }),
      ]);
      if (!current("overview", seq)) return;
      renderMetrics(data || {});
      const items = (recent.data && recent.data.items) || [];
      if (items.length) $("overview-recent-body").replaceChildren(...items.map(orderRow));
      else emptyRow($("overview-recent-body"), 6, "No orders yet.");
      setText("overview-updated", `Updated ${dateFormat.format(new Date())}`);
      setViewState(section, "ready");
    } catch (error) {
      if (!current("overview", seq)) return;
      setViewState(section, "error");
      showProblem(error);
    }
  }

  function renderMetrics(m) {
    setMetric("metric-total_orders", m.total_orders, int(m.total_orders));
    setMetric("metric-revenue_cents", m.revenue_cents, money(m.revenue_cents));
    const average = m.average_processing_seconds;
    setMetric("metric-average_processing_seconds", average, duration(average));
    $("metric-average_processing_seconds").title = average === null || average === undefined
      ? "No order has been delivered yet"
      : `${average} seconds from placement to delivery, on average`;
    setMetric("metric-low_stock_count", m.low_stock_count, int(m.low_stock_count));
    $("metric-low_stock_count").classList.toggle("metric-alert", m.low_stock_count > 0);
    setMetric("metric-open_alerts", m.open_alerts, int(m.open_alerts));
    $("metric-open_alerts").classList.toggle("metric-alert", m.open_alerts > 0);

    const byStatus = m.by_status && typeof m.by_status === "object" ? m.by_status : {};
    const keys = ORDER_STATUSES.concat(Object.keys(byStatus).filter((k) => !ORDER_STATUSES.includes(k)));
    $("overview-statuses").replaceChildren(...keys.map((status) => {
      const count = typeof byStatus[status] === "number" ? byStatus[status] : 0;
      return el("li", null,
        el("a", { href: `#/orders?status=${enc(status)}` }, statusBadge(status)),
        el("span", {
          class: "count",
          "data-testid": `metric-status-${status.replace(/ /g, "_")}`,
          "data-status": status,
          "data-value": count,
        }, int(count)));
    }));

    const dead = $("metric-dead_letters");
    if (m.dead_letters === null || m.dead_letters === undefined) {
      dead.dataset.value = "null";
      dead.replaceChildren(el("p", { class: "muted" }, "Not available: this backend cannot tell."));
    } else if (!Array.isArray(m.dead_letters) || m.dead_letters.length === 0) {
      dead.dataset.value = "0";
      dead.replaceChildren(el("p", null, "No queues reported."));
    } else {
      const total = m.dead_letters.reduce((sum, q) => sum + (Number(q.messages) || 0), 0);
      dead.dataset.value = String(total);
      dead.replaceChildren(el("ul", { class: "dlq-list" }, m.dead_letters.map((q) =>
        el("li", null,
          el("span", null, `${q.queue} queue`),
          el("span", {
            class: q.messages > 0 ? "dlq-bad" : "",
            "data-testid": `metric-dead_letters-${q.queue}`,
            "data-value": q.messages,
          }, q.messages > 0 ? `${int(q.messages)} waiting` : "empty")))));
    }
  }

  VIEWS.overview = () => loadOverview();

  // ---------------------------------------------------------------- orders

  let ordersPager;

  function fillOrdersFilter(params) {
    $("orders-status").value = params.get("status") || "";
    $("orders-customer").value = params.get("customer_id") || "";
    $("orders-from").value = params.get("created_from") || "";
    $("orders-to").value = params.get("created_to") || "";
  }

  function onOrdersFilter(event) {
    event.preventDefault();
    const params = new URLSearchParams();
    const status = $("orders-status").value;
    const customer = $("orders-customer").value.trim();
    const from = $("orders-from").value;
    const to = $("orders-to").value;
    if (status) params.set("status", status);
    if (customer) params.set("customer_id", customer);
    if (from) params.set("created_from", from);
    if (to) params.set("created_to", to);
    go(listHash("orders", params));
  }

  async function loadOrders() {
    const section = $("view-orders");
    const seq = nextSeq("orders");
    setViewState(section, "loading");
    const query = {
      status: $("orders-status").value,
      customer_id: $("orders-customer").value.trim(),
      created_from: dateStart($("orders-from").value),
      created_to: dateEnd($("orders-to").value),
      limit: pageSize,
      next_token: ordersPager.token,
    };
    try {
      const { data } = await api("GET", "/admin/orders", { query });
      if (!current("orders", seq)) return;
      const items = (data && data.items) || [];
      const body = $("orders-body");
      if (!items.length) emptyRow(body, 6, "No orders match.");
      else body.replaceChildren(...items.map(orderRow));
      ordersPager.update(data && data.next_token, items.length);
      setViewState(section, "ready");
    } catch (error) {
      if (!current("orders", seq)) return;
      setViewState(section, "error");
      emptyRow($("orders-body"), 6, "Could not load the orders.");
      showProblem(error);
    }
  }

  function orderRow(order) {
    const units = (order.lines || []).reduce((sum, line) => sum + (Number(line.quantity) || 0), 0);
    return el("tr", { "data-testid": "order-row", "data-id": order.id, "data-status": order.status },
      el("td", null, el("a", { href: `#/orders/${enc(order.id)}`, class: "mono", title: order.id, "data-testid": "order-link" }, shortId(order.id))),
      el("td", null, when(order.created_at)),
      el("td", null, statusBadge(order.status)),
      el("td", { class: "name-cell" }, order.recipient ? order.recipient.name : el("span", { class: "muted" }, "–")),
      el("td", { class: "num" }, int(units)),
      el("td", { class: "num", "data-value": order.total_cents }, money(order.total_cents)));
  }

  VIEWS.orders = ({ params }) => {
    fillOrdersFilter(params);
    ordersPager.reset();
    loadOrders();
  };

  // ---------------------------------------------------------------- order detail

  function fillOrderForms(order) {
    const address = order.shipping_address || {};
    $("address-line1").value = address.line1 || "";
    $("address-line2").value = address.line2 || "";
    $("address-city").value = address.city || "";
    $("address-postal_code").value = address.postal_code || "";
    $("address-country").value = address.country || "";
    $("note-text").value = order.admin_note || "";
    $("cancel-reason").value = "";
    ["address-form", "note-form", "cancel-form"].forEach((id) => { delete $(id).dataset.dirty; });
    $("cancel-form").hidden = true;
    $("address-form").hidden = true;
    clearFieldErrors($("address-form"));
    clearFieldErrors($("note-form"));
  }

  async function loadOrder(id, options = {}) {
    const section = $("view-order");
    const seq = nextSeq("order");
    setViewState(section, "loading");
    try {
      const { data, version } = await api("GET", `/admin/orders/${enc(id)}`);
      if (!current("order", seq)) return null;
      if (version !== null) data.version = version;
      state.order = data;
      renderOrder(data);
      if (options.fillForms) {
        fillOrderForms(data);
        state.orderFormsFor = data.id;
      } else {
        followOrder(data);
      }
      setViewState(section, "ready");
      return data;
    } catch (error) {
      if (!current("order", seq)) return null;
      setViewState(section, "error");
      if (!options.quiet) showProblem(error);
      return null;
    }
  }

  // Forms the user has not touched follow the order; typed input is never overwritten.
  function followOrder(order) {
    if (!$("address-form").dataset.dirty) fillAddress(order);
    if (!$("note-form").dataset.dirty) $("note-text").value = order.admin_note || "";
  }

  function fact(term, value) {
    return [el("dt", null, term), el("dd", null, value)];
  }

  function renderOrder(o) {
    setText("order-title", `Order ${shortId(o.id)}`);
    $("order-title").title = o.id;
    const badge = $("order-status");
    badge.className = `status status-${slug(o.status)}`;
    badge.textContent = o.status;
    badge.dataset.value = o.status;
    setText("order-version", o.version);

    // Offer only the moves the transition table allows from here; the server decides anyway.
    $("order-release").disabled = o.status !== "processing order";
    $("order-mark-paid").disabled = !(o.status === "pending" && !o.payment_id);
    $("order-ship").disabled = o.status !== "paid";
    $("order-deliver").disabled = o.status !== "shipped";
    $("order-cancel").disabled = !CANCELLABLE.includes(o.status);
    $("order-edit-address").disabled = !ADDRESS_EDITABLE.includes(o.status);
    const hints = {
      "processing order": "Waiting for the customer's cooldown; it can be released now or cancelled.",
      pending: o.payment_id ? "A payment is being processed; it becomes paid when the payment succeeds." : "Awaiting payment.",
      paid: "Paid: ready to ship. Cancelling refunds the payment.",
      shipped: "Shipped: record the delivery when it arrives.",
      delivered: "Delivered: nothing more to do.",
      cancelled: "Cancelled: nothing more to do.",
    };
    setText("order-actions-hint", hints[o.status] || "");
    setText("cancel-warning", o.status === "paid" ? "The order is paid: cancelling refunds the payment and returns the stock." : "Cancelling returns the reserved stock.");

    const facts = [
      fact("Order id", el("span", { class: "mono" }, o.id)),
      fact("Customer", el("a", { href: `#/orders?customer_id=${enc(o.customer_id)}`, class: "mono", title: "This customer's orders" }, o.customer_id)),
      fact("Placed", when(o.created_at)),
      fact("Updated", when(o.updated_at)),
    ];
    if (o.release_at) facts.push(fact("Released at", when(o.release_at)));
    if (o.payment_due_at) facts.push(fact("Payment due", when(o.payment_due_at)));
    if (o.payment_id) facts.push(fact("Payment in progress", el("span", { class: "mono" }, o.payment_id)));
    if (o.cancel_reason) facts.push(fact("Cancel reason", el("span", { "data-testid": "order-cancel-reason" }, o.cancel_reason)));
    if (o.admin_note) facts.push(fact("Internal note", el("span", { "data-testid": "order-note" }, o.admin_note)));
    $("order-facts").replaceChildren(...facts.flat());

    const r = o.recipient;
    $("order-recipient").replaceChildren(...(r
      ? [el("strong", null, r.name), el("div", null, r.email), r.phone ? el("div", null, r.phone) : null].filter(Boolean)
      : [el("span", { class: "muted" }, "No recipient recorded.")]));
    const lines = addressLines(o.shipping_address);
    $("order-address").textContent = lines.length ? lines.join("\n") : "No shipping address.";

    const s = o.shipment;
    $("order-shipment").replaceChildren(...(s
      ? [
        el("div", null, "Carrier: ", el("strong", null, s.carrier || "–")),
        el("div", null, "Tracking number: ", el("strong", { class: "mono", "data-testid": "order-tracking" }, s.tracking_number || "–")),
        s.created_at ? el("div", { class: "muted small" }, "Created ", when(s.created_at)) : null,
      ].filter(Boolean)
      : [el("span", { class: "muted" }, "Not shipped yet.")]));

    const lineRows = (o.lines || []).map((line) => el("tr", { "data-testid": "order-line" },
      el("td", { class: "name-cell" }, line.name),
      el("td", { class: "num" }, money(line.unit_price_cents)),
      el("td", { class: "num" }, int(line.quantity)),
      el("td", { class: "num" }, money(line.line_total_cents))));
    if (lineRows.length) $("order-lines-body").replaceChildren(...lineRows);
    else emptyRow($("order-lines-body"), 4, "No lines.");
    const total = $("order-total");
    total.textContent = money(o.total_cents);
    total.dataset.value = String(o.total_cents);

    const payments = Array.isArray(o.payments) ? o.payments : [];
    if (payments.length) $("order-payments-body").replaceChildren(...payments.map((p) => paymentRow(p, false)));
    else emptyRow($("order-payments-body"), 6, "No payments.");

    const history = Array.isArray(o.history) ? o.history : [];
    if (history.length) {
      $("order-history-body").replaceChildren(...history.map((h) => el("tr", null,
        el("td", null, when(h.at)),
        el("td", null, h.event && h.change ? `${h.event}: ${h.change}` : h.event || h.change || "placed"),
        el("td", null, statusBadge(h.status)),
        el("td", { class: "mono" }, h.actor || ""))));
    } else {
      emptyRow($("order-history-body"), 4, "No history.");
    }
  }

  // PUT /admin/orders/{id} with If-Match. True when it was applied.
  async function changeOrder(body, done) {
    const order = state.order;
    if (!order) return false;
    clearMessages();
    const actions = document.querySelectorAll("#view-order .actions button, #view-order form fieldset");
    actions.forEach((node) => { node.disabled = true; });
    try {
      const { data, version } = await api("PUT", `/admin/orders/${enc(order.id)}`, { body, ifMatch: order.version });
      if (version !== null) data.version = version;
      const hadPayments = Array.isArray(data.payments);
      if (!hadPayments) data.payments = order.payments;
      state.order = data;
      actions.forEach((node) => { node.disabled = false; });
      renderOrder(data);
      followOrder(data);
      showNotice(done(data));
      // A status change can touch the payments (a refund): read them again when not included.
      if (!hadPayments) loadOrder(data.id, { quiet: true });
      return true;
    } catch (error) {
      actions.forEach((node) => { node.disabled = false; });
      if (state.order) renderOrder(state.order);
      if (error.handled) return false;
      if (error.status === 412) {
        const fresh = await loadOrder(order.id, { quiet: true });
        const version = fresh ? fresh.version : error.problem.current_version;
        showError(error.problem, {
          conflict: true,
          title: "Someone else changed this order; reloaded the current version",
          lead: `It is now at version ${version === undefined || version === null ? "?" : version} (status ${fresh ? fresh.status : "unknown"}). What you typed is kept: check the order and try again.`,
        });
      } else {
        showProblem(error);
      }
      return false;
    }
  }

  function statusButton(id, label) {
    $(id).addEventListener("click", () => {
      const status = $(id).dataset.status;
      changeOrder({ status }, (o) => `${label}: the order is now ${o.status}.`);
    });
  }

  async function onCancelOrder(event) {
    event.preventDefault();
    const form = $("cancel-form");
    clearFieldErrors(form);
    const reason = $("cancel-reason").value.trim();
    if (!reason) {
      clientInvalid(form, [{ field: "reason", message: "say why the order is cancelled" }]);
      return;
    }
    const ok = await changeOrder({ status: "cancelled", reason }, (o) => `Cancelled: the order is now ${o.status}.`);
    if (ok) {
      $("cancel-reason").value = "";
      delete form.dataset.dirty;
      form.hidden = true;
    } else if (state.order) {
      markFieldErrors(form, lastErrors());
    }
  }

  function lastErrors() {
    const problem = state.lastProblem;
    return problem && Array.isArray(problem.errors) ? problem.errors : [];
  }

  async function onSaveAddress(event) {
    event.preventDefault();
    const form = $("address-form");
    clearFieldErrors(form);
    const value = (id) => $(id).value.trim();
    const address = {
      line1: value("address-line1"),
      city: value("address-city"),
      postal_code: value("address-postal_code"),
      country: value("address-country").toUpperCase(),
    };
    if (value("address-line2")) address.line2 = value("address-line2");
    const missing = [];
    if (!address.line1) missing.push({ field: "line1", message: "required" });
    if (!address.city) missing.push({ field: "city", message: "required" });
    if (!address.postal_code) missing.push({ field: "postal_code", message: "required" });
    if (!/^[A-Z]{2}$/.test(address.country)) missing.push({ field: "country", message: "two letters, e.g. GB" });
    if (missing.length) {
      clientInvalid(form, missing);
      return;
    }
    const ok = await changeOrder({ shipping_address: address }, () => "Shipping address saved.");
    if (ok) {
      form.hidden = true;
      delete form.dataset.dirty;
      fillAddress(state.order);
    } else {
      markFieldErrors(form, lastErrors());
    }
  }

  function fillAddress(order) {
    const address = (order && order.shipping_address) || {};
    $("address-line1").value = address.line1 || "";
    $("address-line2").value = address.line2 || "";
    $("address-city").value = address.city || "";
    $("address-postal_code").value = address.postal_code || "";
    $("address-country").value = address.country || "";
  }

  async function onSaveNote(event) {
    event.preventDefault();
    const form = $("note-form");
    clearFieldErrors(form);
    const note = $("note-text").value;
    const ok = await changeOrder({ note }, () => "Note saved.");
    if (ok) {
      delete form.dataset.dirty;
      $("note-text").value = (state.order && state.order.admin_note) || "";
    } else {
      markFieldErrors(form, lastErrors());
    }
  }

  VIEWS.order = ({ id }) => {
    const sameOrder = state.order && state.order.id === id;
    if (!sameOrder) {
      state.order = null;
      setText("order-title", `Order ${shortId(id)}`);
      setText("order-status", "");
      setText("order-version", "");
      $("order-facts").replaceChildren();
      $("order-recipient").replaceChildren();
      $("order-address").textContent = "";
      $("order-shipment").replaceChildren();
      emptyRow($("order-lines-body"), 4, "Loading…");
      emptyRow($("order-payments-body"), 6, "Loading…");
      emptyRow($("order-history-body"), 4, "Loading…");
      document.querySelectorAll("#view-order .actions button").forEach((b) => { b.disabled = true; });
    }
    loadOrder(id, { fillForms: state.orderFormsFor !== id });
  };

  // ---------------------------------------------------------------- inventory

  let inventoryPager;

  async function loadInventory() {
    const section = $("view-inventory");
    const seq = nextSeq("inventory");
    setViewState(section, "loading");
    try {
      const { data } = await api("GET", "/admin/inventory", {
        query: { low_stock: $("inventory-low").value, limit: pageSize, next_token: inventoryPager.token },
      });
      if (!current("inventory", seq)) return;
      const items = (data && data.items) || [];
      state.products = new Map(items.map((p) => [p.id, p]));
      const body = $("inventory-body");
      if (!items.length) emptyRow(body, 8, "No products.");
      else body.replaceChildren(...items.map(productRow));
      inventoryPager.update(data && data.next_token, items.length);
      setViewState(section, "ready");
    } catch (error) {
      if (!current("inventory", seq)) return;
      setViewState(section, "error");
      emptyRow($("inventory-body"), 8, "Could not load the inventory.");
      showProblem(error);
    }
  }

  function productRow(p) {
    const low = Boolean(p.low_stock);
    const button = (action, label, extra) => el("button", {
      type: "button",
      class: `button-small ${extra || "button-secondary"}`,
      "data-action": action,
      "data-testid": `product-${action}`,
      "aria-label": `${label} ${p.name}`,
    }, label);
    return el("tr", { class: low ? "low-stock" : "", "data-testid": "product-row", "data-id": p.id, "data-low": low ? "true" : "false" },
      el("td", { class: "name-cell", "data-testid": "product-name" }, p.name),
      el("td", { class: "nowrap", "data-testid": "product-category" }, p.category || ""),
      el("td", { class: "num", "data-value": p.price_cents }, money(p.price_cents)),
      el("td", { class: "num", "data-testid": "product-stock", "data-value": p.stock }, int(p.stock)),
      el("td", { class: "num", "data-testid": "product-held", "data-value": p.held }, int(p.held)),
      el("td", { class: "num", "data-value": p.low_stock_threshold }, int(p.low_stock_threshold)),
      el("td", { "data-testid": "product-low" }, low ? el("span", { class: "low-flag", title: "Stock is below the threshold" }, "low") : ""),
      el("td", { class: "actions-cell" },
        button("edit", "Edit"),
        button("adjust", "Adjust stock"),
        button("delete", "Delete", "button-danger-outline")));
  }

  function hidePanels(except) {
    ["product-panel", "adjust-panel", "delete-panel"].forEach((id) => {
      if (id !== except) $(id).hidden = true;
    });
  }

  function openProductForm(product) {
    const form = $("product-form");
    clearFieldErrors(form);
    clearMessages();
    hidePanels("product-panel");
    $("product-conflict").hidden = true;
    $("product-conflict").replaceChildren();
    state.editing = product ? { id: product.id, version: product.version, original: product } : null;
    $("product-name").value = product ? product.name : "";
    $("product-description").value = product ? product.description || "" : "";
    $("product-price").value = product ? centsToInput(product.price_cents) : "";
    // An edit never sets the stock (orders may have moved it since this read): it is shown,
    // read-only, and moves through "Adjust stock"; only a new product takes a starting stock.
    $("product-stock").value = product ? String(product.stock) : "0";
    $("product-stock").disabled = Boolean(product);
    $("product-stock-hint").hidden = !product;
    if (product) $("product-stock").setAttribute("aria-describedby", "product-stock-hint");
    else $("product-stock").removeAttribute("aria-describedby");
    $("product-category").value = product ? product.category || "" : "";
    $("product-threshold").value = product && product.low_stock_threshold !== undefined && product.low_stock_threshold !== null
      ? String(product.low_stock_threshold) : "";
    setText("product-form-title", product ? `Edit “${product.name}”` : "New product");
    setText("product-form-version", product ? `Editing version ${product.version}` : "");
    $("product-panel").hidden = false;
    $("product-panel").scrollIntoView({ block: "nearest" });
    $("product-name").focus();
  }

  // The body of a POST, or of a PUT but for its stock (`editing`): the PUT sends the stock as
  // read just before it, since the server refuses any other.
  function readProductForm(editing) {
    const errors = [];
    const body = {
      name: $("product-name").value.trim(),
      category: $("product-category").value.trim(),
    };
    const description = $("product-description").value;
    // An edit is a PATCH: an emptied description is sent, to clear it.
    if (description.trim()) body.description = description;
    else if (editing) body.description = "";
    const price = parseMoney($("product-price").value);
    if (price === null) errors.push({ field: "price_cents", message: "an amount such as 12.99" });
    else body.price_cents = price;
    if (!editing) {
      const stock = parseInteger($("product-stock").value);
      if (stock === null) errors.push({ field: "stock", message: "a whole number" });
      else body.stock = stock;
    }
    const thresholdText = $("product-threshold").value.trim();
    if (thresholdText) {
      const threshold = parseInteger(thresholdText);
      if (threshold === null) errors.push({ field: "low_stock_threshold", message: "a whole number" });
      else body.low_stock_threshold = threshold;
    }
    if (!body.name) errors.push({ field: "name", message: "required" });
    if (!body.category) errors.push({ field: "category", message: "required" });
    return { body, errors };
  }

  async function onSaveProduct(event) {
    event.preventDefault();
    const form = $("product-form");
    clearMessages();
    clearFieldErrors(form);
    const editing = state.editing;
    const { body, errors } = readProductForm(editing);
    if (errors.length) {
      clientInvalid(form, errors);
      return;
    }
    setBusy(form, true);
    try {
      if (editing) {
        // A PATCH of the form's fields: the stock (moved by orders and adjustments only) and the
        // stock shards stay as they are. If-Match is the version the form was opened at, so
        // another catalog edit is a 412.
        const { data } = await api("PATCH", `/products/${enc(editing.id)}`, { body, ifMatch: editing.version });
        $("product-panel").hidden = true;
        state.editing = null;
        showNotice(`Saved “${data && data.name ? data.name : body.name}” (version ${data && data.version !== undefined ? data.version : "?"}).`);
      } else {
        const { data } = await api("POST", "/admin/inventory", { body });
        $("product-panel").hidden = true;
        showNotice(`Created “${data && data.name ? data.name : body.name}”.`);
      }
      loadInventory();
    } catch (error) {
      if (error.handled) return;
      if (error.status === 412 && editing) {
        await productConflict(editing, error);
      } else {
        showProblem(error);
        markFieldErrors(form, error.problem && error.problem.errors);
      }
    } finally {
      setBusy(form, false);
    }
  }

  // 412 on an edit: read the product as it is now, take its version, keep what the user typed,
  // and say what the other change was.
  async function productConflict(editing, error) {
    let fresh = null;
    try {
      const { data, version } = await api("GET", `/admin/inventory/${enc(editing.id)}`);
      fresh = data;
      if (version !== null) fresh.version = version;
    } catch (readError) {
      if (readError.handled) return;
    }
    const version = fresh && fresh.version !== undefined ? fresh.version : error.problem.current_version;
    if (version !== undefined && version !== null) editing.version = version;
    setText("product-form-version", `Editing version ${editing.version} (reloaded after a conflict)`);
    showError(error.problem, {
      conflict: true,
      title: "Someone else changed this product; reloaded the current version",
      lead: `It is now at version ${version === undefined || version === null ? "?" : version}. Your input is still in the form: review it and save again to apply it over the current version.`,
    });
    const box = $("product-conflict");
    const items = [];
    if (fresh) {
      const original = editing.original || {};
      const fields = [
        ["name", "Name", (v) => v],
        ["description", "Description", (v) => v || "(none)"],
        ["price_cents", "Price", money],
        ["category", "Category", (v) => v],
        ["low_stock_threshold", "Low-stock threshold", (v) => String(v)],
        ["stock", "Stock", (v) => String(v)],
      ];
      for (const [key, label, show] of fields) {
        if (fresh[key] !== undefined && fresh[key] !== original[key]) {
          items.push(el("li", null, `${label}: now ${show(fresh[key])} (was ${show(original[key])} when you opened it)`));
        }
      }
      editing.original = fresh;
      if (fresh.stock !== undefined) $("product-stock").value = String(fresh.stock);
    }
    box.replaceChildren(
      el("strong", null, `Conflict: the product is now at version ${version === undefined || version === null ? "?" : version}.`),
      items.length ? el("ul", null, items) : el("p", null, "The other change is not visible in these fields."));
    box.hidden = false;
  }

  async function openAdjust(product) {
    clearMessages();
    hidePanels("adjust-panel");
    state.adjusting = product;
    clearFieldErrors($("adjust-form"));
    setText("adjust-product", `“${product.name}”`);
    setText("adjust-current", int(product.stock));
    $("adjust-current").dataset.value = String(product.stock);
    $("adjust-delta").value = "";
    $("adjust-reason").value = "";
    $("adjust-panel").hidden = false;
    $("adjust-panel").scrollIntoView({ block: "nearest" });
    $("adjust-delta").focus();
    loadAdjustments(product.id, false);
  }

  function adjustmentRow(a) {
    return el("tr", { "data-testid": "adjustment-row", "data-id": a.id },
      el("td", null, when(a.at)),
      el("td", { class: "num", "data-value": a.delta }, a.delta > 0 ? `+${int(a.delta)}` : int(a.delta)),
      el("td", { class: "name-cell" }, a.reason || ""),
      el("td", { class: "mono" }, a.actor || ""));
  }

  async function loadAdjustments(productId, more) {
    const seq = nextSeq("adjustments");
    const body = $("adjust-history-body");
    if (!more) {
      emptyRow(body, 4, "Loading…");
      state.adjustPager.next = null;
    }
    try {
      const { data } = await api("GET", `/admin/inventory/${enc(productId)}/adjustments`, {
        query: { limit: PAGE_SIZE, next_token: more ? state.adjustPager.next : undefined },
      });
      if (!current("adjustments", seq)) return;
      const items = (data && data.items) || [];
      if (!more) {
        if (items.length) body.replaceChildren(...items.map(adjustmentRow));
        else emptyRow(body, 4, "No adjustments yet.");
      } else {
        items.forEach((a) => body.appendChild(adjustmentRow(a)));
      }
      state.adjustPager.next = (data && data.next_token) || null;
      $("adjust-more").hidden = !state.adjustPager.next;
    } catch (error) {
      if (!current("adjustments", seq)) return;
      emptyRow(body, 4, "Could not load the adjustments.");
      showProblem(error);
    }
  }

  async function onAdjust(event) {
    event.preventDefault();
    const form = $("adjust-form");
    const product = state.adjusting;
    if (!product) return;
    clearMessages();
    clearFieldErrors(form);
    const delta = parseInteger($("adjust-delta").value);
    const reason = $("adjust-reason").value.trim();
    const errors = [];
    if (delta === null || delta === 0) errors.push({ field: "delta", message: "a whole number other than 0, e.g. 5 or -2" });
    if (!reason) errors.push({ field: "reason", message: "say why the stock changes" });
    if (errors.length) {
      clientInvalid(form, errors);
      return;
    }
    setBusy(form, true);
    try {
      const { data } = await api("POST", `/admin/inventory/${enc(product.id)}/adjustments`, { body: { delta, reason } });
      const updated = data && data.product ? data.product : null;
      if (updated) {
        state.adjusting = updated;
        setText("adjust-current", int(updated.stock));
        $("adjust-current").dataset.value = String(updated.stock);
      }
      $("adjust-delta").value = "";
      $("adjust-reason").value = "";
      showNotice(updated
        ? `Stock of “${updated.name}” is now ${int(updated.stock)} (${delta > 0 ? "+" : ""}${delta}).`
        : "Adjustment recorded.");
      loadAdjustments(product.id, false);
      loadInventory();
    } catch (error) {
      if (error.handled) return;
      showProblem(error);
      markFieldErrors(form, error.problem && error.problem.errors);
    } finally {
      setBusy(form, false);
    }
  }

  function openDelete(product) {
    clearMessages();
    hidePanels("delete-panel");
    state.deleting = product;
    setText("delete-question", `Delete “${product.name}”? It disappears from the catalog; orders that contain it keep their lines.`);
    $("delete-panel").hidden = false;
    $("delete-panel").scrollIntoView({ block: "nearest" });
    $("delete-cancel").focus();
  }

  async function onDelete() {
    const product = state.deleting;
    if (!product) return;
    clearMessages();
    const buttons = [$("delete-confirm"), $("delete-cancel")];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await api("DELETE", `/admin/inventory/${enc(product.id)}`, { ifMatch: product.version });
      $("delete-panel").hidden = true;
      state.deleting = null;
      showNotice(`Deleted “${product.name}”.`);
      loadInventory();
    } catch (error) {
      if (error.handled) return;
      if (error.status === 412) {
        $("delete-panel").hidden = true;
        state.deleting = null;
        loadInventory();
        showError(error.problem, {
          conflict: true,
          title: "Someone else changed this product; reloaded the current version",
          lead: "Nothing was deleted. Check the product and delete it again if you still want to.",
        });
      } else {
        showProblem(error);
      }
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function onInventoryClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("tr[data-id]");
    const product = row ? state.products.get(row.dataset.id) : null;
    if (!product) return;
    if (button.dataset.action === "edit") openProductForm(product);
    else if (button.dataset.action === "adjust") openAdjust(product);
    else if (button.dataset.action === "delete") openDelete(product);
  }

  VIEWS.inventory = ({ params }) => {
    const low = params.get("low_stock");
    $("inventory-low").value = low === "true" || low === "false" ? low : "";
    inventoryPager.reset();
    loadInventory();
  };

  // ---------------------------------------------------------------- payments

  let paymentsPager;

  function cardText(card) {
    if (!card) return "–";
    return `${card.brand || "card"} •••• ${card.last4 || "????"}`;
  }

  function paymentRow(p, withOrder) {
    return el("tr", { "data-testid": "payment-row", "data-id": p.id, "data-status": p.status },
      el("td", { class: "mono", title: p.id }, shortId(p.id)),
      el("td", null, when(p.created_at)),
      withOrder ? el("td", null, el("a", { href: `#/orders/${enc(p.order_id)}`, class: "mono", title: p.order_id }, shortId(p.order_id))) : null,
      el("td", null, statusBadge(p.status)),
      el("td", { class: "num", "data-value": p.amount_cents }, money(p.amount_cents)),
      el("td", { class: "nowrap" }, cardText(p.card)),
      el("td", { class: "name-cell" }, p.failure_reason || ""));
  }

  function onPaymentsFilter(event) {
    event.preventDefault();
    const params = new URLSearchParams();
    const status = $("payments-status").value;
    const order = $("payments-order").value.trim();
    if (status) params.set("status", status);
    if (order) params.set("order_id", order);
    go(listHash("payments", params));
  }

  async function loadPayments() {
    const section = $("view-payments");
    const seq = nextSeq("payments");
    setViewState(section, "loading");
    try {
      const { data } = await api("GET", "/admin/payments", {
        query: {
          status: $("payments-status").value,
          order_id: $("payments-order").value.trim(),
          limit: pageSize,
          next_token: paymentsPager.token,
        },
      });
      if (!current("payments", seq)) return;
      const items = (data && data.items) || [];
      if (items.length) $("payments-body").replaceChildren(...items.map((p) => paymentRow(p, true)));
      else emptyRow($("payments-body"), 7, "No payments match.");
      paymentsPager.update(data && data.next_token, items.length);
      setViewState(section, "ready");
    } catch (error) {
      if (!current("payments", seq)) return;
      setViewState(section, "error");
      emptyRow($("payments-body"), 7, "Could not load the payments.");
      showProblem(error);
    }
  }

  VIEWS.payments = ({ params }) => {
    $("payments-status").value = params.get("status") || "";
    $("payments-order").value = params.get("order_id") || "";
    paymentsPager.reset();
    loadPayments();
  };

  // ---------------------------------------------------------------- alerts

  let alertsPager;

  async function loadAlerts() {
    const section = $("view-alerts");
    const seq = nextSeq("alerts");
    setViewState(section, "loading");
    try {
      const { data } = await api("GET", "/admin/alerts", {
        query: { acknowledged: $("alerts-filter").value, limit: pageSize, next_token: alertsPager.token },
      });
      if (!current("alerts", seq)) return;
      const items = (data && data.items) || [];
      if (items.length) $("alerts-body").replaceChildren(...items.map(alertRow));
      else emptyRow($("alerts-body"), 7, $("alerts-filter").value === "false" ? "No open alerts." : "No alerts.");
      alertsPager.update(data && data.next_token, items.length);
      setViewState(section, "ready");
    } catch (error) {
      if (!current("alerts", seq)) return;
      setViewState(section, "error");
      emptyRow($("alerts-body"), 7, "Could not load the alerts.");
      showProblem(error);
    }
  }

  function alertRow(a) {
    const acknowledged = Boolean(a.acknowledged_at);
    return el("tr", { "data-testid": "alert-row", "data-id": a.id, "data-product-id": a.product_id, "data-acknowledged": acknowledged ? "true" : "false" },
      el("td", null, when(a.created_at)),
      el("td", { class: "name-cell", "data-testid": "alert-product" }, a.product_name),
      el("td", { class: "num", "data-value": a.stock }, int(a.stock)),
      el("td", { class: "num", "data-value": a.threshold }, int(a.threshold)),
      el("td", null, a.cause || ""),
      el("td", null, acknowledged
        ? [when(a.acknowledged_at), a.acknowledged_by ? el("div", { class: "muted small mono" }, a.acknowledged_by) : null]
        : el("span", { class: "muted" }, "open")),
      el("td", { class: "actions-cell" }, acknowledged ? "" : el("button", {
        type: "button",
        class: "button-small",
        "data-action": "acknowledge",
        "data-testid": "alert-ack",
        "aria-label": `Acknowledge the alert for ${a.product_name}`,
      }, "Acknowledge")));
  }

  async function onAlertsClick(event) {
    const button = event.target.closest("button[data-action='acknowledge']");
    if (!button) return;
    const row = button.closest("tr[data-id]");
    if (!row) return;
    clearMessages();
    button.disabled = true;
    try {
      const { data } = await api("POST", `/admin/alerts/${enc(row.dataset.id)}/acknowledge`);
      showNotice(`Acknowledged the alert for “${data && data.product_name ? data.product_name : "the product"}”.`);
      loadAlerts();
    } catch (error) {
      button.disabled = false;
      showProblem(error);
    }
  }

  VIEWS.alerts = ({ params }) => {
    const ack = params.get("acknowledged");
    $("alerts-filter").value = ack === "true" ? "true" : ack === "all" ? "" : "false";
    alertsPager.reset();
    loadAlerts();
  };

  // ---------------------------------------------------------------- customers

  let customersPager;

  function onCustomersFilter(event) {
    event.preventDefault();
    const params = new URLSearchParams();
    const email = $("customers-email").value.trim();
    if (email) params.set("email", email);
    go(listHash("customers", params));
  }

  async function loadCustomers() {
    const section = $("view-customers");
    const seq = nextSeq("customers");
    setViewState(section, "loading");
    const email = $("customers-email").value.trim();
    try {
      const { data } = await api("GET", "/admin/customers", { query: { limit: pageSize, next_token: customersPager.token, email } });
      if (!current("customers", seq)) return;
      const items = (data && data.items) || [];
      if (items.length) {
        $("customers-body").replaceChildren(...items.map((c) => el("tr", { "data-testid": "customer-row", "data-id": c.id },
          el("td", { class: "name-cell" }, c.name),
          el("td", { class: "name-cell" }, c.email),
          el("td", { class: "nowrap" }, c.phone || ""),
          el("td", null, c.address ? c.address.city || "" : ""),
          el("td", null, when(c.created_at)),
          el("td", null, el("a", { href: `#/orders?customer_id=${enc(c.id)}` }, "Orders")))));
      } else {
        emptyRow($("customers-body"), 6, email ? "No customer signs in with this email." : "No customers yet.");
      }
      customersPager.update(data && data.next_token, items.length);
      setViewState(section, "ready");
    } catch (error) {
      if (!current("customers", seq)) return;
      setViewState(section, "error");
      emptyRow($("customers-body"), 6, "Could not load the customers.");
      showProblem(error);
    }
  }

  VIEWS.customers = ({ params }) => {
    $("customers-email").value = params.get("email") || "";
    customersPager.reset();
    loadCustomers();
  };

  // ---------------------------------------------------------------- your account

  async function onChangePassword(event) {
    event.preventDefault();
    const form = $("password-form");
    clearMessages();
    clearFieldErrors(form);
    const current = $("password-current").value;
    const fresh = $("password-new").value;
    const errors = [];
    if (!current) errors.push({ field: "current_password", message: "enter your current password" });
    if (fresh.length < 10) errors.push({ field: "new_password", message: "must be at least 10 characters" });
    else if (fresh !== $("password-repeat").value) errors.push({ field: "repeat", message: "does not match the new password" });
    if (errors.length) {
      clientInvalid(form, errors);
      return;
    }
    setBusy(form, true);
    try {
      const { data } = await api("POST", "/auth/password", { body: { current_password: current, new_password: fresh } });
      // The change ended every session, this page's too: it goes on with the token it answered.
      setSession(data, stored(USER_KEY) || "");
      form.reset();
      showNotice("Your password is changed. Every other session of this account is signed out.");
    } catch (error) {
      showProblem(error);
      markFieldErrors(form, lastErrors());
    } finally {
      setBusy(form, false);
    }
  }

  async function onLogoutEverywhere() {
    const button = $("logout-everywhere");
    button.disabled = true;
    try {
      await api("POST", "/auth/logout-everywhere");
    } catch (error) {
      showProblem(error);
      return;
    } finally {
      button.disabled = false;
    }
    showSignedOut();
    showNotice("You are signed out everywhere.");
  }

  VIEWS.account = () => {
    $("password-form").reset();
    clearFieldErrors($("password-form"));
    setViewState($("view-account"), "ready");
  };

  // ---------------------------------------------------------------- wiring

  function init() {
    ordersPager = new Pager("orders", loadOrders);
    inventoryPager = new Pager("inventory", loadInventory);
    paymentsPager = new Pager("payments", loadPayments);
    alertsPager = new Pager("alerts", loadAlerts);
    customersPager = new Pager("customers", loadCustomers);

    document.querySelector(".skip-link").addEventListener("click", (event) => {
      event.preventDefault();
      $("main").focus();
    });
    $("login-form").addEventListener("submit", onLogin);
    $("logout").addEventListener("click", onLogout);
    $("password-form").addEventListener("submit", onChangePassword);
    $("logout-everywhere").addEventListener("click", onLogoutEverywhere);

    $("overview-refresh").addEventListener("click", () => {
      clearMessages();
      loadOverview();
    });

    $("orders-filter").addEventListener("submit", onOrdersFilter);
    $("customers-filter").addEventListener("submit", onCustomersFilter);
    $("customers-reset").addEventListener("click", () => go("#/customers"));
    $("orders-reset").addEventListener("click", () => go("#/orders"));

    $("order-reload").addEventListener("click", () => {
      if (!state.order) return;
      clearMessages();
      loadOrder(state.order.id, { fillForms: false });
    });
    statusButton("order-release", "Released");
    statusButton("order-mark-paid", "Marked paid");
    statusButton("order-ship", "Shipped");
    statusButton("order-deliver", "Delivered");
    $("order-cancel").addEventListener("click", () => {
      $("address-form").hidden = true;
      $("cancel-form").hidden = false;
      $("cancel-reason").focus();
    });
    $("cancel-dismiss").addEventListener("click", () => { $("cancel-form").hidden = true; });
    $("cancel-form").addEventListener("submit", onCancelOrder);
    $("order-edit-address").addEventListener("click", () => {
      $("cancel-form").hidden = true;
      $("address-form").hidden = false;
      $("address-line1").focus();
    });
    $("address-dismiss").addEventListener("click", () => {
      // Closing drops what was typed: the form shows the order's address again.
      $("address-form").hidden = true;
      delete $("address-form").dataset.dirty;
      clearFieldErrors($("address-form"));
      fillAddress(state.order);
    });
    $("address-form").addEventListener("submit", onSaveAddress);
    ["address-form", "note-form", "cancel-form"].forEach((id) => {
      $(id).addEventListener("input", () => { $(id).dataset.dirty = "true"; });
    });
    $("note-form").addEventListener("submit", onSaveNote);

    $("inventory-low").addEventListener("change", () => {
      const value = $("inventory-low").value;
      go(listHash("inventory", new URLSearchParams(value ? { low_stock: value } : {})));
    });
    $("product-new").addEventListener("click", () => openProductForm(null));
    $("product-form").addEventListener("submit", onSaveProduct);
    $("product-cancel").addEventListener("click", () => {
      $("product-panel").hidden = true;
      state.editing = null;
    });
    $("inventory-body").addEventListener("click", onInventoryClick);
    $("adjust-form").addEventListener("submit", onAdjust);
    $("adjust-cancel").addEventListener("click", () => {
      $("adjust-panel").hidden = true;
      state.adjusting = null;
    });
    $("adjust-more").addEventListener("click", () => {
      if (state.adjusting) loadAdjustments(state.adjusting.id, true);
    });
    $("delete-confirm").addEventListener("click", onDelete);
    $("delete-cancel").addEventListener("click", () => {
      $("delete-panel").hidden = true;
      state.deleting = null;
    });

    $("payments-filter").addEventListener("submit", onPaymentsFilter);
    $("payments-reset").addEventListener("click", () => go("#/payments"));

    $("alerts-filter").addEventListener("change", () => {
      const value = $("alerts-filter").value;
      go(listHash("alerts", new URLSearchParams({ acknowledged: value === "" ? "all" : value })));
    });
    $("alerts-refresh").addEventListener("click", () => {
      clearMessages();
      loadAlerts();
    });
    $("alerts-body").addEventListener("click", onAlertsClick);

    document.querySelectorAll("table.stack tbody").forEach((tbody) => {
      new MutationObserver(() => labelCells(tbody)).observe(tbody, { childList: true });
    });

    window.addEventListener("hashchange", route);
    scheduleExpiry();
    route();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
