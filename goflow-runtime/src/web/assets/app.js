// goflow UI behaviour. Embedded in the binary; no build step.
"use strict";

// The conf editor: the text must be a JSON object; say why not as one types.
function checkJson(area) {
  const status = document.getElementById(area.id + "-status");
  const submit = area.form && area.form.querySelector("button[type=submit]");
  const text = area.value.trim();
  let error = null;
  if (text !== "") {
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        error = "The configuration must be a JSON object, such as {\"key\": \"value\"}.";
      }
    } catch (e) {
      error = "Not valid JSON: " + e.message;
    }
  }
  area.classList.toggle("invalid", error !== null);
  if (status) {
    status.textContent = error || (text === "" ? "" : "Valid JSON object.");
    status.className = "json-status " + (error ? "error" : "ok");
  }
  if (submit) submit.disabled = error !== null;
}

// Follows a try's log: Server-Sent Events from the log stream, or, when
// the stream keeps failing (or EventSource is missing), polling the JSON
// log API. `pre.dataset.follow` says how it follows now ("sse", "poll",
// then "done"); `pre.dataset.via` and `window.goflowLogSource` how it last
// followed.
function followLog(pre) {
  const status = document.getElementById("log-status");
  let after = Number(pre.dataset.after || "0");
  let count = pre.querySelectorAll(".line").length;
  let pending = [];
  let flushing = false;

  function say(text) { if (status) status.textContent = text; }
  function mode(m) {
    pre.dataset.follow = m;
    if (m !== "done") { pre.dataset.via = m; window.goflowLogSource = m; }
  }
  function showState(state) {
    const badge = document.querySelector("#log-state .badge");
    if (badge) { badge.textContent = state; badge.className = "badge st-" + state; }
  }
  // Appends the lines received, in one go per tick, keeping the view at
  // the bottom when it was there.
  function flush() {
    flushing = false;
    if (pending.length === 0) return;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    const frag = document.createDocumentFragment();
    for (const l of pending) {
      const span = document.createElement("span");
      span.className = "line " + l.stream;
      const ts = document.createElement("span");
      ts.className = "ts";
      ts.textContent = l.timestamp.substring(11, 23);
      span.appendChild(ts);
      span.appendChild(document.createTextNode(" " + l.line + "\n"));
      frag.appendChild(span);
    }
    count += pending.length;
    pending = [];
    pre.appendChild(frag);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
  function add(l) {
    if (l.id <= after) return;
    after = l.id;
    pending.push(l);
    if (!flushing) { flushing = true; setTimeout(flush, 20); }
  }
  function finish(state) {
    flush();
    mode("done");
    showState(state);
    say("Finished: " + state + ". " + (count === 0 ? "No log lines." : count + " lines."));
  }

  function poll() {
    mode("poll");
    async function once() {
      let live = true;
      try {
        const res = await fetch(pre.dataset.src + "&after_id=" + after, {
          credentials: "same-origin",
          headers: { "Accept": "application/json" },
        });
        if (!res.ok) throw new Error("HTTP " + res.status);
        const body = await res.json();
        body.lines.forEach(add);
        live = body.live || body.more;
        if (live) { showState(body.state); say("Following…"); } else finish(body.state);
      } catch (e) {
        say("Could not fetch the log (" + e.message + "); retrying…");
      }
      if (live) setTimeout(once, 1000);
    }
    once();
  }

  function stream() {
    mode("sse");
    let failures = 0;
    const source = new EventSource(pre.dataset.stream + "&after_id=" + after);
    source.onopen = () => { failures = 0; say("Following…"); };
    source.onmessage = (e) => { failures = 0; add(JSON.parse(e.data)); };
    source.addEventListener("end", (e) => {
      source.close();
      finish(JSON.parse(e.data).state);
    });
    source.onerror = () => {
      failures += 1;
      // EventSource reconnects by itself (resuming after the last id);
      // after repeated failures, or when it gave up, poll instead.
      if (source.readyState === EventSource.CLOSED || failures >= 3) {
        source.close();
        flush();
        poll();
      } else {
        say("Reconnecting…");
      }
    };
  }

  if (pre.dataset.live !== "true") { mode("done"); return; }
  if (window.EventSource && pre.dataset.stream) stream(); else poll();
}

// Shows or hides goflow's own log lines; remembered across pages (of
// this goflow: one per base path, `<body data-base>`, on a shared site).
function hideSystemLines(box, pre) {
  const base = document.body.dataset.base || "";
  const key = "goflow.hideSystemLines" + (base ? ":" + base : "");
  try { box.checked = window.localStorage.getItem(key) === "true"; } catch (e) { /* private mode */ }
  const apply = () => {
    pre.classList.toggle("hide-system", box.checked);
    try { window.localStorage.setItem(key, String(box.checked)); } catch (e) { /* private mode */ }
  };
  box.addEventListener("change", apply);
  apply();
}

// Pages with runs in flight reload themselves, unless a form is being edited.
function autoRefresh(el) {
  const seconds = Number(el.dataset.seconds || "5");
  let touched = false;
  document.addEventListener("input", () => { touched = true; });
  setInterval(() => {
    const active = document.activeElement;
    const editing = active && (active.tagName === "TEXTAREA" || active.tagName === "INPUT");
    if (!touched && !editing) window.location.reload();
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("textarea[data-json]").forEach((area) => {
    area.addEventListener("input", () => checkJson(area));
    checkJson(area);
  });
  const log = document.getElementById("log");
  if (log) followLog(log);
  const hide = document.getElementById("hide-system");
  if (log && hide) hideSystemLines(hide, log);
  const refresh = document.getElementById("autorefresh");
  if (refresh) autoRefresh(refresh);
});
