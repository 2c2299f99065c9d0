// The kiosk: the prompt until a scan comes, then the decision for display-ms, then the prompt again.
// A newer scan replaces the one shown at once. Nothing here shows the code: the stream does not carry it.
"use strict";
(function () {
  const body = document.body;
  const displayMs = Number(body.dataset.displayMs) || 4000;
  const $ = (id) => document.getElementById(id);
  const idle = $("idle"), decision = $("decision");
  let timer = null;
  // commit-to-paint latencies (ms), read by bench/ui.py; bounded.
  window.kioskLatency = [];
  window.kioskShown = 0;

  const zone = body.dataset.tz || undefined;
  const locale = body.dataset.locale || document.documentElement.lang;
  let timeFormat, dateFormat;
  try {
    timeFormat = new Intl.DateTimeFormat(locale, {timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    dateFormat = new Intl.DateTimeFormat(locale, {timeZone: zone, weekday: "long", day: "numeric", month: "numeric", year: "numeric"});
  } catch (e) {  // an unknown zone: the browser's own
    timeFormat = new Intl.DateTimeFormat(locale, {hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    dateFormat = new Intl.DateTimeFormat(locale, {weekday: "long", day: "numeric", month: "numeric", year: "numeric"});
  }
  function tick() {
    const now = new Date();
    $("clock").textContent = timeFormat.format(now);
    $("date").textContent = dateFormat.format(now);
    setTimeout(tick, 1000 - (now.getTime() % 1000) + 5);
  }

  function showIdle() {
    timer = null;
    body.className = "idle";
    decision.hidden = true;
    idle.hidden = false;
  }

  function show(view) {
    if (timer !== null) clearTimeout(timer);
    $("symbol").textContent = view.symbol;
    $("word").textContent = view.word;
    $("label").textContent = view.label || "";
    $("reason").textContent = view.reason || "";
    $("review-hint").hidden = view.decision !== "review";
    body.className = view.decision;
    idle.hidden = true;
    decision.hidden = false;
    window.kioskShown += 1;
    timer = setTimeout(showIdle, displayMs);
    const committed = view.committed_unix_ns;
    requestAnimationFrame(function () {
      const paintedMs = performance.timeOrigin + performance.now();
      if (committed && window.kioskLatency.length < 10000) window.kioskLatency.push(paintedMs - committed / 1e6);
    });
  }

  function mark(id, state) {
    const el = $(id);
    el.className = "mark " + state;
    el.textContent = el.dataset[state] || el.dataset.bad;
  }
  async function health() {
    try {
      const reply = await fetch("/health", {cache: "no-store"});
      const marks = (await reply.json()).marks;
      mark("mark-source", marks.source);
      mark("mark-lists", marks.lists);
      mark("mark-hub", marks.hub);
    } catch (e) { /* the daemon restarting: the stream's own mark says so */ }
    setTimeout(health, 10000);
  }

  const RETRY_MS = 3000;
  function listen() {
    const source = new EventSource(body.dataset.events);
    source.addEventListener("scan", (message) => show(JSON.parse(message.data)));
    source.addEventListener("reload", () => location.reload());  // we fell behind: start afresh
    source.onopen = () => { $("offline").hidden = true; };
    source.onerror = () => {
      if (source.readyState !== EventSource.OPEN) $("offline").hidden = false;
      // After a non-200 answer (503: too many pages; 502 from a restart) the browser gives up for good:
      // start a new stream ourselves, a little later.
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        setTimeout(listen, RETRY_MS);
      }
    };
  }

  tick();
  health();
  listen();
})();
