// Makes a page live: shows times in the reader's zone with relative text, counts running builds' time, and
// re-fetches the page's live block when the events stream says something it shows changed.

const EVENTS = [
  "change_added", "buildset_added", "buildset_completed", "build_request_added", "build_request_claimed",
  "build_request_unclaimed", "build_request_completed", "build_request_cancelled", "build_started",
  "build_updated", "build_finished", "step_started", "step_updated", "step_finished", "worker_attached",
  "worker_detached", "worker_paused", "worker_unpaused", "scheduler_fired", "reset",
];

function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

function relative(date) {
  const s = (Date.now() - date.getTime()) / 1000;
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function localize(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const date = new Date(t.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    t.title = format.format(date);
    t.textContent = relative(date);
  }
  for (const e of root.querySelectorAll(".elapsed[data-since]")) {
    const since = Number(e.dataset.since);
    e.textContent = `running for ${span(Date.now() / 1000 - since)}`;
  }
}

function fragmentUrl() {
  const url = new URL(window.location.href);
  url.searchParams.set("fragment", "live");
  url.hash = "";
  return url;
}

let pending = null;
let busy = false;

async function refresh() {
  pending = null;
  if (busy) { schedule(); return; }
  const current = document.querySelector("[data-fragment=live]");
  if (!current) return;
  busy = true;
  try {
    const response = await fetch(fragmentUrl(), { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const html = await response.text();
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    const fresh = template.content.querySelector("[data-fragment=live]");
    if (!fresh) return;
    // Keep the reader where they are: the scroll position and the focused control, by id.
    const x = window.scrollX, y = window.scrollY;
    const focused = document.activeElement && document.activeElement.id;
    localize(fresh);
    current.replaceWith(fresh);
    window.scrollTo(x, y);
    if (focused) document.getElementById(focused)?.focus({ preventScroll: true });
    document.dispatchEvent(new CustomEvent("kiln:refreshed"));
  } catch (_) {
    // The next event tries again.
  } finally {
    busy = false;
  }
}

function schedule() {
  // Events come in bursts (a build's steps): one fetch per burst.
  if (pending === null) pending = setTimeout(refresh, 250);
}

function connect() {
  const patterns = (document.body.dataset.events || "").split(" ").filter(Boolean);
  if (patterns.length === 0 || !window.EventSource) return;
  const url = new URL("/api/v2/events", window.location.origin);
  for (const p of patterns) url.searchParams.append("path", p);
  const state = document.querySelector(".live-state");
  const source = new EventSource(url);
  source.onopen = () => { if (state) state.textContent = "live"; };
  source.onerror = () => { if (state) state.textContent = "reconnecting…"; };
  for (const name of EVENTS) source.addEventListener(name, schedule);
}

localize(document);
setInterval(() => localize(document), 15000);
setInterval(() => {
  for (const e of document.querySelectorAll(".elapsed[data-since]")) {
    e.textContent = `running for ${span(Date.now() / 1000 - Number(e.dataset.since))}`;
  }
}, 1000);
connect();
document.addEventListener("kiln:acted", schedule);
