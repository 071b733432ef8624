// A client shaped like a Raycast extension: fetch() the endpoint, read the body as a
// stream (as an extension piping audio to a player would), and record when each chunk
// arrived. Node 18+ (global fetch), no dependencies.
//
//   node raycast_fetch.mjs URL '{"input": "Hello", "voice": "af_heart"}' OUT_FILE
//
// Prints one JSON line: status, content type, the X-Kokoro-* headers, time to the
// response headers and to the first body byte, total time, bytes, and each chunk's
// arrival time (ms since the request) and size. Writes the body to OUT_FILE.
import { writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

const [url, bodyJson, outFile] = process.argv.slice(2);
if (!url || !bodyJson) {
  console.error("usage: node raycast_fetch.mjs URL JSON_BODY [OUT_FILE]");
  process.exit(2);
}

const t0 = performance.now();
const headers = { "Content-Type": "application/json" };
if (process.env.KOKORO_API_KEY) headers.Authorization = `Bearer ${process.env.KOKORO_API_KEY}`;
const response = await fetch(url, { method: "POST", headers, body: bodyJson });
const headersMs = performance.now() - t0;

const chunks = [];
const parts = [];
const reader = response.body.getReader();
for (;;) {
  const { done, value } = await reader.read();
  if (done) break;
  chunks.push({ t_ms: performance.now() - t0, bytes: value.byteLength });
  parts.push(Buffer.from(value));
}
const body = Buffer.concat(parts);
if (outFile) writeFileSync(outFile, body);

const pick = (name) => response.headers.get(name);
console.log(JSON.stringify({
  status: response.status,
  content_type: pick("content-type"),
  variant: pick("x-kokoro-variant"),
  config: pick("x-kokoro-config"),
  voice: pick("x-kokoro-voice"),
  headers_ms: headersMs,
  first_byte_ms: chunks.length ? chunks[0].t_ms : null,
  total_ms: performance.now() - t0,
  bytes: body.length,
  chunks,
  error: response.status === 200 ? null : body.toString("utf8"),
}));
