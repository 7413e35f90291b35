// Streams POST /api/chat/stream with fetch (so Stop can abort it) and
// parses the Server-Sent Events as they arrive.
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
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      const e = body.error || {};
      throw new Error((e.message || "HTTP " + res.status) + (e.code ? " (" + e.code + ")" : ""));
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
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
        }
        if (data.length) handle(name, data.join("\n"));
      }
    }
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
