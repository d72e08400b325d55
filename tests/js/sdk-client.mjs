// An independent MCP client (the official TypeScript SDK) speaking stdio to mcp-bridge-shim.
// Usage: node sdk-client.mjs SDK_DIR SHIM_PATH BRIDGE_URL  -> prints one JSON line.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [sdkDir, shim, url] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(join(sdkDir, "dist/esm", p)).href);
const { Client } = await load("client/index.js");
const { StdioClientTransport } = await load("client/stdio.js");

const client = new Client({ name: "sdk-e2e", version: "1.0.0" }, { capabilities: {} });
await client.connect(new StdioClientTransport({ command: shim, args: ["--url", url], stderr: "inherit" }));
const tools = await client.listTools();
const echo = await client.callTool({ name: "alpha__echo", arguments: { message: "from the sdk" } });
const ping = await client.ping();
console.log(JSON.stringify({
  server: client.getServerVersion(),
  tools: tools.tools.map((t) => t.name),
  echo: echo.content[0].text,
  ping,
}));
await client.close();
