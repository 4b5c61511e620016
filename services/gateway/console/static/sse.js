// Server-Sent Events over fetch(): EventSource cannot send the Authorization header, so
// the stream is read from a ReadableStream, and on reconnect Last-Event-ID resumes it.

import { authHeaders, session } from "./api.js";

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

/** Parse one SSE block ("id: …\nevent: …\ndata: …") into {id, event, data}. */
export function parseBlock(block) {
  const out = { id: null, event: "message", data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") out.id = value;
    else if (field === "event") out.event = value;
    else if (field === "data") out.data.push(value);
  }
  return { ...out, data: out.data.join("\n") };
}

/**
 * Follow the live event stream; `onEvent({id, event, data})` per event (data parsed).
 * `onState("live"|"reconnecting"|"stopped", reason)`. Answers a function that stops it.
 */
export function follow(path, onEvent, onState = () => {}) {
  const control = new AbortController();
  const { signal } = control;
  let lastId = "";
  let delay = 1000;

  async function once() {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId) headers["Last-Event-ID"] = lastId;
    const response = await fetch(path, { headers, signal, cache: "no-store" });
    if (response.status === 401 || response.status === 403) {
      const text = await response.text();
      throw Object.assign(new Error(`live events refused (${response.status}): ${text.slice(0, 200)}`), { fatal: true });
    }
    if (!response.ok || !response.body) throw new Error(`live events: HTTP ${response.status}`);
    onState("live");
    delay = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer = (buffer + value).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = parseBlock(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (block.id) lastId = block.id;
        if (!block.data) continue;
        let data;
        try { data = JSON.parse(block.data); } catch { data = block.data; }
        try { onEvent({ ...block, data }); } catch (err) { console.error("live event handler", err); }
      }
    }
  }

  (async () => {
    while (!signal.aborted && session.token()) {
      try {
        await once();
      } catch (err) {
        if (signal.aborted) break;
        if (err.fatal) { onState("stopped", err.message); return; }
        onState("reconnecting", err.message);
      }
      if (signal.aborted) break;
      onState("reconnecting", "stream ended");
      await sleep(delay, signal);
      delay = Math.min(delay * 2, 15000);
    }
    onState("stopped");
  })();
  return () => control.abort();
}
