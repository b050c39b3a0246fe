// Error results through the TypeScript SDK client: it validates structuredContent against the tool's output
// schema even on errors and throws when it does not fit. Every call below must come back as a result with
// isError true, text "<code>: <sentence>" and _meta["io.uponai/error"] = {code, message, details}.
// Usage: node check.mjs <python> ; prints one JSON line per call, exits 1 on the first problem.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [python] = process.argv.slice(2);
const transport = new StdioClientTransport({
  command: python, args: ["-m", "uponai_mcp", "serve"],
  env: { ...process.env, UPONAI_SANDBOX: "1", UPONAI_CONFIRM: "always", UPONAI_CALLING_WINDOW: "off" },
  stderr: "ignore",
});
const client = new Client({ name: "ts-check", version: "1.0.0" });
await client.connect(transport);
await client.listTools(); // the client caches output schemas from here and validates against them

const FROM = "+14155550100", TO = "+14155552671";
const calls = [
  ["create_phone_call", { from_number: FROM, to_number: TO, agent_id: "agent_support" }, "invalid_argument"],
  ["create_phone_call", { from_number: FROM, to_number: TO, override_agent_version: "2" }, "invalid_argument"],
  ["create_phone_call", { from_number: FROM, to_number: "911" }, "emergency_number"],
  ["create_phone_call", { from_number: FROM, to_number: TO }, "confirmation_required"],
  ["confirm_call", { token: "cfm_nope" }, "confirmation_invalid"],
  ["get_call", { call_id: "call_missing" }, "not_found"],
  ["get_batch", { batch_id: "batch_missing" }, "not_found"],
  ["set_cps", { provider: "twilio", cps: 99 }, "cps_above_provider_max"],
  ["list_calls", { limit: true }, "invalid_argument"],
  ["no_such_tool", {}, "unknown_tool"],
];
let failed = false;
for (const [name, args, want] of calls) {
  let line;
  try {
    const result = await client.callTool({ name, arguments: args });
    const text = result.content?.[0]?.text ?? "";
    const data = result._meta?.["io.uponai/error"];
    const ok = result.isError === true && text.startsWith(`${want}: `) && data?.code === want
      && typeof data.message === "string" && typeof data.details === "object" && result.structuredContent === undefined;
    line = { name, want, ok, text: text.slice(0, 120) };
  } catch (err) {
    line = { name, want, ok: false, threw: String(err).slice(0, 300) };
  }
  failed ||= !line.ok;
  console.log(JSON.stringify(line));
}
await client.close();
process.exit(failed ? 1 : 0);
