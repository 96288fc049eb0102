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

// Follows a running try's log: fetches the lines after the last one seen.
function followLog(pre) {
  const status = document.getElementById("log-status");
  let after = Number(pre.dataset.after || "0");
  let live = pre.dataset.live === "true";
  async function poll() {
    try {
      const res = await fetch(pre.dataset.src + "&after_id=" + after, {
        credentials: "same-origin",
        headers: { "Accept": "application/json" },
      });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const body = await res.json();
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      for (const l of body.lines) {
        const span = document.createElement("span");
        span.className = "line " + l.stream;
        const ts = document.createElement("span");
        ts.className = "ts";
        ts.textContent = l.timestamp.substring(11, 23);
        span.appendChild(ts);
        span.appendChild(document.createTextNode(" " + l.line + "\n"));
        pre.appendChild(span);
      }
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      after = body.next_after_id;
      live = body.live || body.more;
      const badge = document.querySelector("#log-state .badge");
      if (badge) { badge.textContent = body.state; badge.className = "badge st-" + body.state; }
      if (status) {
        status.textContent = live ? "Following the log while the task runs…"
          : "The try has finished (" + body.state + ").";
      }
    } catch (e) {
      if (status) status.textContent = "Could not fetch the log (" + e.message + "); retrying…";
    }
    if (live) setTimeout(poll, 1000);
  }
  if (live) setTimeout(poll, 1000);
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
  const refresh = document.getElementById("autorefresh");
  if (refresh) autoRefresh(refresh);
});
