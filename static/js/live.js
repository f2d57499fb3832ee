/* Live Mode (DESIGN section 9): the Usage and Overview pages' websocket.
 *
 * The page root (#dashboard) carries the state and the socket:
 *   data-live-state     off | connecting | on | reconnecting (kept current here)
 *   data-live-socket    the socket's path with the page's query string (dashboards.consumers)
 *   data-live-since     when the page was rendered: the first connect catches up from there
 *   data-live-sections  ids of the sections to refresh as records arrive (their own partials)
 *
 * Records arrive in batches (the server sends at most twenty a second). A record after a quiet
 * moment is painted into the feed at once; under a burst the feed is repainted at most every
 * REPAINT_MS (a throttle, not a delay: waiting REPAINT_MS after every first record was most of
 * the time a row took to show). The sections are refreshed at most every REFRESH_MS (longer if a
 * refresh is slow), each through the page's own view as htmx partials, so the numbers stay
 * exactly the server's; the feed never waits for them. A dropped socket reconnects with
 * exponential backoff and catches up on what it missed.
 * The toggle (data-live-toggle) switches the socket at once and remembers the choice by posting
 * its form in the background; without JavaScript the form posts and the page reloads.
 */
(function () {
  "use strict";

  const REPAINT_MS = 100;
  const REFRESH_MS = 1000;
  const FEED_ROWS = 50;
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

  let live = null; // the controller of the page shown now

  function money(value, currency) {
    const format = window.TallyCharts && window.TallyCharts.format;
    return format ? format.money(value, currency) : value;
  }

  function compact(value) {
    const format = window.TallyCharts && window.TallyCharts.format;
    return format ? format.compact(value) : String(value);
  }

  function thousands(value) {
    const format = window.TallyCharts && window.TallyCharts.format;
    return format ? format.thousands(value) : String(value);
  }

  class Live {
    constructor(root) {
      this.root = root;
      this.toggle = root.querySelector("[data-live-toggle]");
      this.form = root.querySelector("[data-live-form]");
      this.label = root.querySelector("[data-live-label]");
      this.feed = root.querySelector("[data-live-feed]");
      this.rows = root.querySelector("[data-live-rows]");
      this.template = root.querySelector("[data-live-template]");
      this.since = root.dataset.liveSince || null;
      this.sections = (root.dataset.liveSections || "").split(/\s+/).filter(Boolean);
      this.socket = null;
      this.attempt = 0;
      this.retryTimer = null;
      this.queue = [];
      this.repaintTimer = null;
      this.lastRepaint = -Infinity;
      this.refreshTimer = null;
      this.refreshing = false;
      this.refreshWanted = false;
      this.lastRefresh = 0;
      this.refreshCost = 0;
      this.changed = new Set();
      this.wanted = root.dataset.liveState !== "off";
      this.onClick = (event) => {
        event.preventDefault();
        this.setWanted(!this.wanted, true);
      };
      if (this.toggle) this.toggle.addEventListener("click", this.onClick);
      if (this.wanted) this.connect();
    }

    setState(state) {
      this.root.dataset.liveState = state;
      if (this.label) {
        this.label.textContent = { off: "off", connecting: "connecting…", on: "on", reconnecting: "reconnecting…" }[state];
      }
      if (this.toggle) this.toggle.setAttribute("aria-pressed", state === "off" ? "false" : "true");
      if (this.feed) this.feed.hidden = state === "off";
    }

    setWanted(on, remember) {
      this.wanted = on;
      const url = new URL(window.location.href);
      if (on) url.searchParams.set("live", "1");
      else url.searchParams.delete("live");
      window.history.replaceState(window.history.state, "", url);
      if (on) {
        this.since = new Date().toISOString();
        this.connect();
      } else {
        this.disconnect();
        this.setState("off");
      }
      if (remember && this.form) this.remember(on);
    }

    remember(on) {
      const body = new FormData(this.form);
      body.set("live", on ? "1" : "0");
      fetch(this.form.action, { method: "POST", body, headers: { "HX-Request": "true" }, credentials: "same-origin" })
        .then(() => {
          const choice = this.form.querySelector("[data-live-choice]");
          if (choice) choice.value = on ? "0" : "1";
        })
        .catch(() => {}); // the choice is a convenience; the socket works without it
    }

    socketUrl() {
      const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      const url = new URL(this.root.dataset.liveSocket, `${scheme}//${window.location.host}`);
      if (this.since) url.searchParams.set("since", this.since);
      return url;
    }

    connect() {
      clearTimeout(this.retryTimer);
      this.setState(this.attempt ? "reconnecting" : "connecting");
      const socket = new WebSocket(this.socketUrl());
      this.socket = socket;
      socket.addEventListener("open", () => {
        if (this.socket !== socket) return;
        const reconnected = this.attempt > 0;
        this.attempt = 0;
        this.setState("on");
        if (reconnected) this.scheduleRefresh(); // numbers that changed while away
      });
      socket.addEventListener("message", (event) => {
        if (this.socket !== socket) return;
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (message.type === "records" && message.records.length) this.receive(message.records);
      });
      socket.addEventListener("close", () => {
        if (this.socket !== socket) return;
        this.socket = null;
        if (!this.wanted) return;
        const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
        this.attempt += 1;
        this.setState("reconnecting");
        this.retryTimer = setTimeout(() => this.connect(), delay * (0.8 + Math.random() * 0.4));
      });
    }

    disconnect() {
      clearTimeout(this.retryTimer);
      this.attempt = 0;
      const socket = this.socket;
      this.socket = null;
      if (socket) socket.close();
    }

    receive(records) {
      for (const record of records) {
        this.queue.push(record);
        if (!this.since || record.received_at > this.since) this.since = record.received_at;
        this.changed.add(record.email || record.user);
        if (record.team) this.changed.add(record.team);
      }
      this.scheduleRepaint();
      this.scheduleRefresh();
    }

    scheduleRepaint() {
      if (this.repaintTimer) return;
      const wait = this.lastRepaint + REPAINT_MS - performance.now();
      if (wait <= 0) this.repaint();
      else this.repaintTimer = setTimeout(() => this.repaint(), wait);
    }

    repaint() {
      this.repaintTimer = null;
      this.lastRepaint = performance.now();
      const records = this.queue.splice(0);
      if (!this.rows || !this.template) return;
      const fragment = document.createDocumentFragment();
      for (const record of records.reverse().slice(0, FEED_ROWS)) fragment.appendChild(this.row(record));
      this.rows.prepend(fragment);
      const rows = this.rows.querySelectorAll("tr[data-request-id]");
      for (let i = FEED_ROWS; i < rows.length; i += 1) rows[i].remove();
      const empty = this.rows.querySelector("[data-live-empty]");
      if (empty) empty.hidden = rows.length > 0;
    }

    row(record) {
      const currency = this.root.dataset.currency;
      const row = this.template.content.firstElementChild.cloneNode(true);
      const field = (name) => row.querySelector(`[data-field="${name}"]`);
      row.dataset.requestId = record.request_id;
      row.classList.add("is-new");
      if (record.status === "error") row.classList.add("is-error");
      const time = field("time");
      time.dateTime = record.timestamp;
      time.textContent = record.timestamp.slice(11, 19); // already in the org's zone
      field("user").textContent = record.user;
      field("user").title = record.email;
      const team = field("team");
      team.hidden = !record.team;
      team.style.setProperty("--team-colour", record.team_colour || "#98a2b3");
      field("team-name").textContent = record.team;
      field("model").textContent = record.model;
      const tokens = field("tokens");
      tokens.textContent = compact(record.total_tokens);
      tokens.title = `${thousands(record.input_tokens)} in · ${thousands(record.output_tokens)} out`;
      const cost = field("cost");
      cost.dataset.value = record.cost;
      cost.textContent = money(record.cost, currency);
      return row;
    }

    scheduleRefresh() {
      if (this.refreshing) {
        this.refreshWanted = true;
        return;
      }
      if (this.refreshTimer) return;
      const wait = Math.max(0, this.lastRefresh + Math.max(REFRESH_MS, 2 * this.refreshCost) - performance.now());
      this.refreshTimer = setTimeout(() => this.refresh(), wait);
    }

    async refresh() {
      this.refreshTimer = null;
      this.refreshing = true;
      this.refreshWanted = false;
      const started = performance.now();
      const changed = this.changed;
      this.changed = new Set();
      try {
        await Promise.all(this.sections.map((id) => this.refreshSection(id, changed)));
      } finally {
        this.refreshing = false;
        this.lastRefresh = performance.now();
        this.refreshCost = this.lastRefresh - started;
        if (this.refreshWanted) this.scheduleRefresh();
      }
    }

    async refreshSection(id, changed) {
      const target = document.getElementById(id);
      if (!target) return;
      try {
        const response = await fetch(window.location.href, {
          headers: { "HX-Request": "true", "HX-Target": id, "HX-Current-URL": window.location.href },
          credentials: "same-origin",
        });
        if (!response.ok || live !== this) return;
        const html = await response.text();
        const current = document.getElementById(id);
        if (!current) return;
        window.htmx.swap(current, html, { swapStyle: "outerHTML" });
        const fresh = document.getElementById(id);
        if (!fresh) return;
        for (const row of fresh.querySelectorAll("tr[data-row]")) {
          if (changed.has(row.dataset.row)) row.classList.add("is-updated");
        }
        for (const card of fresh.querySelectorAll("[data-kpi]")) card.classList.add("is-updated");
      } catch (error) {
        // A failed refresh is retried with the next records.
      }
    }

    stop() {
      this.wanted = false;
      this.disconnect();
      clearTimeout(this.repaintTimer);
      clearTimeout(this.refreshTimer);
      if (this.toggle) this.toggle.removeEventListener("click", this.onClick);
    }
  }

  function setup() {
    const root = document.querySelector("[data-live-state]");
    if (live && live.root === root) return;
    if (live) live.stop();
    live = root ? new Live(root) : null;
  }

  document.addEventListener("DOMContentLoaded", setup);
  // Boosted navigation (filters, by user / by team) swaps the page: follow it.
  document.addEventListener("htmx:afterSettle", setup);
  window.addEventListener("pagehide", () => {
    if (live) live.stop();
    live = null;
  });
  window.addEventListener("pageshow", (event) => event.persisted && setup()); // back from the page cache
})();
