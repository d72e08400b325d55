// A client on the official TypeScript SDK v2 (@modelcontextprotocol/client 2.x), driven through
// the bridge over Streamable HTTP. The TypeScript counterpart of tests/compat/py_client.py.
//
// Usage: node ts2-client.mjs URL MODE    (MODE: auto | legacy | 2026-07-28)
//   auto        versionNegotiation { mode: 'auto' }: probe with server/discover, fall back to initialize
//   legacy      versionNegotiation { mode: 'legacy' }: the plain 2025 initialize handshake
//   2026-07-28  versionNegotiation { mode: { pin: '2026-07-28' } }: modern era only, no fallback
//
// The SDK is loaded from $MCP_TS2_DIR/node_modules (default: <repo>/.tools/compat), so the script
// needs no NODE_PATH. MCP_TS2_DEBUG=1 logs every HTTP exchange to stderr.
//
// Prints one JSON object: the protocol version it ended up speaking, how many tools it saw, and
// what a plain call, a sampling call, an elicitation call, a multi-round input_required call and
// (2026-07-28 era only) a tools/list_changed subscription returned. The tools are
// server-everything's (prefix `everything__`) and fixture-everything's (prefix `fx__`).
import { pathToFileURL, fileURLToPath } from "node:url";
import { join, dirname } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = process.env.MCP_TS2_DIR || join(here, "../../.tools/compat");
const { Client, StreamableHTTPClientTransport } = await import(
  pathToFileURL(join(sdkDir, "node_modules/@modelcontextprotocol/client/dist/index.mjs")).href
);

const [url, mode] = process.argv.slice(2);
if (!url || !mode) {
  console.error("usage: node ts2-client.mjs URL auto|legacy|2026-07-28");
  process.exit(2);
}
const negotiation =
  mode === "auto" ? "auto" : mode === "legacy" ? "legacy" : { pin: mode === "modern" ? "2026-07-28" : mode };

const debug = !!process.env.MCP_TS2_DEBUG;
const log = (...a) => debug && console.error(...a);
// A fetch that logs each request and streams each response body to stderr as it arrives.
const loggingFetch = async (input, init = {}) => {
  const headers = Object.fromEntries(new Headers(init.headers || {}).entries());
  log(`>>> ${init.method || "GET"} ${input} ${JSON.stringify(headers)}${init.body ? "\n" + init.body : ""}`);
  const res = await fetch(input, init);
  log(`<<< ${res.status} ${JSON.stringify(Object.fromEntries(res.headers.entries()))}`);
  if (!res.body) return res;
  const [mine, theirs] = res.body.tee();
  (async () => {
    const dec = new TextDecoder();
    try {
      for await (const chunk of mine) log(`<<< body: ${dec.decode(chunk, { stream: true })}`);
    } catch (e) {
      log(`<<< body error: ${e}`);
    }
  })();
  return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
};

const client = new Client(
  { name: "ts2-compat-client", version: "1.0.0" },
  {
    capabilities: { sampling: {}, elicitation: {} },
    versionNegotiation: { mode: negotiation },
  },
);
client.setRequestHandler("sampling/createMessage", async () => ({
  role: "assistant",
  content: { type: "text", text: "sampled by the ts client" },
  model: "ts-test-model",
  stopReason: "endTurn",
}));
client.setRequestHandler("elicitation/create", async () => ({ action: "accept", content: { name: "Ada" } }));
client.onerror = (e) => log(`client error: ${e?.stack || e}`);

const textOf = (result) =>
  (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join(" ");
const call = async (name, args) => textOf(await client.callTool({ name, arguments: args }));

const transport = new StreamableHTTPClientTransport(new URL(url), debug ? { fetch: loggingFetch } : {});
await client.connect(transport);
const out = {};
out.version = client.getNegotiatedProtocolVersion();
out.tools = (await client.listTools()).tools.length;
// MCP_COMPAT_TOOLS overrides the three calls: {"sum": [name, args], "sampling": …, "elicitation": …}.
const tools = {
  sum: ["everything__get-sum", { a: 2, b: 3 }],
  sampling: ["everything__trigger-sampling-request", { prompt: "hi" }],
  elicitation: ["everything__trigger-elicitation-request", {}],
  ...JSON.parse(process.env.MCP_COMPAT_TOOLS || "{}"),
};
out.sum = await call(...tools.sum);
out.sampling = await call(...tools.sampling);
out.elicitation = await call(...tools.elicitation);
out.multi_round = await call("fx__test_input_required_result_multi_round", {});
if (client.getProtocolEra() === "modern") {
  let gotEvent;
  const event = new Promise((resolve) => (gotEvent = resolve));
  client.setNotificationHandler("notifications/tools/list_changed", (n) => gotEvent(n.method));
  const sub = await client.listen({ toolsListChanged: true });
  out.honored = Object.entries(sub.honoredFilter)
    .filter(([, v]) => (Array.isArray(v) ? v.length : v))
    .map(([k]) => k)
    .sort();
  await call("fx__test_trigger_tool_change", {});
  let timer;
  out.event = await Promise.race([
    event,
    new Promise((resolve) => (timer = setTimeout(() => resolve(null), 10_000))),
  ]);
  clearTimeout(timer);
  await sub.close();
}
console.log(JSON.stringify(out));
await client.close();
process.exit(0);
