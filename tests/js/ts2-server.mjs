// A modern-only MCP server on the official TypeScript SDK v2 (@modelcontextprotocol/server 2.x):
// stateless Streamable HTTP speaking only protocol revision 2026-07-28 (createMcpHandler with
// `legacy: 'reject'`: a 2025 `initialize` is refused, GET/DELETE are not served), on plain
// node:http bound to 127.0.0.1.
//
// Usage: node ts2-server.mjs PORT     (endpoint: http://127.0.0.1:PORT/mcp; any path is served)
//
// Surface: tool `add` {a, b} -> "sum: N"; tool `ask-name` asks for a name through an
// input_required elicitation round and answers "Hello, NAME!"; resource `demo://ts2` ("ts2
// resource"); prompt `greet` {name}. The SDK is loaded from $MCP_TS2_DIR/node_modules (default:
// <repo>/.tools/compat), so the script needs no NODE_PATH. Prints "listening PORT" on stderr once ready.
import { createServer } from "node:http";
import { Readable } from "node:stream";
import { pathToFileURL, fileURLToPath } from "node:url";
import { join, dirname } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = process.env.MCP_TS2_DIR || join(here, "../../.tools/compat");
const { McpServer, createMcpHandler, fromJsonSchema, inputRequired, acceptedContent } = await import(
  pathToFileURL(join(sdkDir, "node_modules/@modelcontextprotocol/server/dist/index.mjs")).href
);

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node ts2-server.mjs PORT");
  process.exit(2);
}

const object = (properties, required = Object.keys(properties)) =>
  fromJsonSchema({ type: "object", properties, required });
const nameSchema = { type: "object", properties: { name: { type: "string" } }, required: ["name"] };

// One fresh instance per HTTP request (the handler is stateless).
const factory = () => {
  const server = new McpServer({ name: "ts2-server", version: "1.0.0" });
  server.registerTool(
    "add",
    { description: "Adds two numbers", inputSchema: object({ a: { type: "number" }, b: { type: "number" } }) },
    async ({ a, b }) => ({ content: [{ type: "text", text: `sum: ${a + b}` }] }),
  );
  server.registerTool(
    "ask-name",
    { description: "Asks the user for a name (elicitation) and greets it", inputSchema: object({}) },
    async (_args, ctx) => {
      const answer = acceptedContent(ctx.mcpReq.inputResponses, "name");
      if (typeof answer?.name !== "string") {
        return inputRequired({
          inputRequests: {
            name: inputRequired.elicit({ message: "What is your name?", requestedSchema: nameSchema }),
          },
        });
      }
      return { content: [{ type: "text", text: `Hello, ${answer.name}!` }] };
    },
  );
  server.registerResource("ts2", "demo://ts2", { mimeType: "text/plain", description: "A demo resource" }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: "text/plain", text: "ts2 resource" }],
  }));
  server.registerPrompt(
    "greet",
    { description: "Greets someone", argsSchema: object({ name: { type: "string" } }) },
    async ({ name }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Please greet ${name}.` } }],
    }),
  );
  return server;
};

const handler = createMcpHandler(factory, {
  legacy: "reject",
  onerror: (e) => process.env.MCP_TS2_DEBUG && console.error(`mcp: ${e?.message || e}`),
});

// node:http <-> web Request/Response, streaming both ways (SSE responses included).
const http = createServer(async (req, res) => {
  const abort = new AbortController();
  res.on("close", () => abort.abort());
  try {
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
    }
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    const request = new Request(`http://${req.headers.host || `127.0.0.1:${port}`}${req.url}`, {
      method: req.method,
      headers,
      body: hasBody ? Readable.toWeb(req) : undefined,
      duplex: hasBody ? "half" : undefined,
      signal: abort.signal,
    });
    const response = await handler.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
    if (!response.body) return res.end();
    for await (const chunk of response.body) {
      res.write(chunk);
    }
    res.end();
  } catch (e) {
    if (!res.headersSent) {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(e?.message || e));
    } else {
      res.destroy();
    }
  }
});
http.listen(port, "127.0.0.1", () => console.error(`listening ${port}`));
const stop = async () => {
  await handler.close().catch(() => {});
  http.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
