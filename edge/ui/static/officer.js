// The officer page: live scans from /officer/events, filters and search, review expiry. No library, no build.
"use strict";
(function () {
  const table = document.getElementById("scans");
  if (!table) return;
  const body = table.tBodies[0];
  const keep = parseInt(table.dataset.keep, 10) || 200;
  // The device's clock against this browser's: expiry is judged on the device's time.
  const offset = parseInt(table.dataset.nowMs, 10) - Date.now();
  const decision = document.getElementById("filter-decision");
  const reason = document.getElementById("filter-reason");
  const search = document.getElementById("search");
  const noMatch = document.getElementById("no-match");
  const live = document.getElementById("live");

  function shown(row) {
    const q = search.value.trim().toLowerCase();
    return (!decision.value || row.dataset.decision === decision.value)
      && (!reason.value || row.dataset.reason === reason.value)
      && (!q || row.dataset.search.includes(q));
  }

  function filter() {
    let any = false;
    for (const row of body.rows) {
      row.hidden = !shown(row);
      any = any || !row.hidden;
    }
    noMatch.hidden = any;
  }

  function expire() {
    const now = Date.now() + offset;
    for (const row of body.querySelectorAll("tr.waiting[data-expires-ms]")) {
      if (now >= parseInt(row.dataset.expiresMs, 10)) {
        row.classList.replace("waiting", "expired");
        const form = row.querySelector("form.review");
        if (form) form.remove();
        const note = row.querySelector(".expired-note");
        if (note) note.hidden = false;
      }
    }
  }

  function answered(refId, text) {
    const row = body.querySelector(`tr[data-id="${CSS.escape(refId)}"]`);
    if (!row) return;
    row.classList.remove("waiting", "expired");
    row.classList.add("answered");
    const cell = row.querySelector("td.action");
    cell.textContent = "";
    const note = document.createElement("span");
    note.className = "answered-note";
    note.textContent = text;
    cell.appendChild(note);
  }

  function add(data) {
    if (body.querySelector(`tr[data-id="${CSS.escape(data.id)}"]`)) return;
    const holder = document.createElement("tbody");
    holder.innerHTML = data.html;  // rendered and escaped by the server
    const row = holder.firstElementChild;
    if (!row) return;
    row.hidden = !shown(row);
    body.insertBefore(row, body.firstElementChild);
    while (body.rows.length > keep) body.deleteRow(-1);
    if (data.ref_id && data.answer) answered(data.ref_id, data.answer);
    filter();
  }

  const RETRY_MS = 3000;
  function connect() {
    const events = new EventSource("/officer/events");
    events.onopen = () => { live.textContent = live.dataset.live; live.className = "live on"; };
    events.onerror = () => {
      live.textContent = live.dataset.offline; live.className = "live off";
      // A non-200 answer (503: too many pages; 403: logged out elsewhere) ends an EventSource for good.
      if (events.readyState === EventSource.CLOSED) {
        events.close();
        setTimeout(connect, RETRY_MS);
      }
    };
    events.addEventListener("scan", (e) => add(JSON.parse(e.data)));
    // The server dropped this page for being slow, or restarted: a reload shows what was missed.
    events.addEventListener("reload", () => { events.close(); window.location.reload(); });
  }

  decision.addEventListener("change", filter);
  reason.addEventListener("change", filter);
  search.addEventListener("input", filter);
  filter();
  expire();
  setInterval(expire, 1000);
  connect();
})();
