// Streams POST /api/chat/stream with fetch (so Stop can abort it), parses
// the Server-Sent Events as they arrive, and resumes a dropped stream.
const $ = (id) => document.getElementById(id);
let controller = null;

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

function showSources(list) {
  const ol = $("sources");
  ol.replaceChildren();
  for (const s of list) {
    const li = document.createElement("li");
    li.value = s.n;
    // Only web links are clickable: a `javascript:` or `data:` URL from an
    // untrusted index must not run in this page.
    const link = typeof s.url === "string" && /^https?:\/\//i.test(s.url);
    const a = document.createElement(link ? "a" : "span");
    if (link) { a.href = s.url; a.target = "_blank"; a.rel = "noopener noreferrer"; }
    a.textContent = s.title || s.id;
    const p = document.createElement("div");
    p.className = "snippet";
    p.textContent = s.snippet;
    li.append(a, p);
    ol.append(li);
  }
}

function handle(name, data) {
  if (name === "meta") $("status").textContent = "Answering with " + JSON.parse(data).model + "…";
  else if (name === "sources") showSources(JSON.parse(data));
  else if (name === "done") {
    const d = JSON.parse(data);
    $("status").textContent = "Done in " + d.timings_ms.total + " ms" + (d.fallback ? " (" + d.fallback + ")" : "");
  } else if (name === "error") {
    const e = JSON.parse(data);
    $("error").textContent = e.message + " (" + e.code + ")";
  } else if (name === "message") $("answer").textContent += data;
}

// With API keys configured on the server, the page asks for one when a
// request is refused and keeps it for this tab (sessionStorage).
function authHeaders() {
  const key = sessionStorage.getItem("spindle-api-key");
  return key ? { authorization: "Bearer " + key } : {};
}

// Reads one response's events into the page, keeping in `state` the last
// event id seen and whether the answer ended (`done` or `error`): a read
// that fails midway leaves it as far as it got.
async function readEvents(res, state) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let v = i < 0 ? "" : line.slice(i + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "event") name = v;
        else if (field === "data") data.push(v);
        else if (field === "id") state.last = v;
      }
      if (data.length) handle(name, data.join("\n"));
      if (name === "done" || name === "error") {
        state.ended = true;
        return;
      }
    }
  }
}

async function failed(res) {
  const body = await res.json().catch(() => ({}));
  const e = body.error || {};
  return new Error((e.message || "HTTP " + res.status) + (e.code ? " (" + e.code + ")" : ""));
}

// A dropped connection is resumed from the last event received, as an
// EventSource would: `Last-Event-ID` on the same route, up to 3 times.
// Servers without a stream journal say so (410), which is shown.
const RESUME_ATTEMPTS = 3;

async function ask(query) {
  const typed = $("key").value.trim();
  if (typed) sessionStorage.setItem("spindle-api-key", typed);
  controller = new AbortController();
  setBusy(true);
  for (const id of ["answer", "error", "status"]) $(id).textContent = "";
  $("sources").replaceChildren();
  try {
    const res = await fetch("api/chat/stream", {
      method: "POST",
      headers: { "content-type": "application/json", ...authHeaders() },
      body: JSON.stringify({ query }),
      signal: controller.signal,
    });
    if (res.status === 401) {
      sessionStorage.removeItem("spindle-api-key");
      $("key-row").hidden = false;
      $("key").focus();
    }
    if (!res.ok) throw await failed(res);
    const state = { last: null, ended: false };
    try {
      await readEvents(res, state);
    } catch (e) {
      if (e.name === "AbortError") throw e;
    }
    for (let attempt = 1; !state.ended && state.last && attempt <= RESUME_ATTEMPTS; attempt++) {
      $("status").textContent = "Connection lost; resuming…";
      await new Promise((r) => setTimeout(r, 250 * attempt));
      try {
        const again = await fetch("api/chat/stream", {
          headers: { "last-event-id": state.last, ...authHeaders() },
          signal: controller.signal,
        });
        if (again.status === 204) state.ended = true;
        else if (!again.ok) throw await failed(again);
        else await readEvents(again, state);
      } catch (e) {
        if (e.name === "AbortError" || !(e instanceof TypeError)) throw e;
      }
    }
    if (!state.ended) throw new Error("the connection was lost before the answer was complete");
  } catch (e) {
    if (e.name === "AbortError") $("status").textContent = "Stopped.";
    else $("error").textContent = e.message;
  } finally {
    controller = null;
    setBusy(false);
  }
}

$("ask").addEventListener("submit", (ev) => { ev.preventDefault(); ask($("query").value); });
$("stop").addEventListener("click", () => controller && controller.abort());
