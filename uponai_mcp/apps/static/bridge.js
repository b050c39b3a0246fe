// The MCP Apps bridge (ext-apps 2026-01-26): JSON-RPC 2.0 over postMessage with the host window.
// Kept tiny and dependency-free so the app stays one self-contained document.
const bridge = (() => {
  const PROTOCOL = "2026-01-26";
  const pending = new Map();
  const handlers = {};
  let nextId = 1;
  let host = { hostCapabilities: {}, hostContext: {} };
  const post = (msg) => window.parent.postMessage({ jsonrpc: "2.0", ...msg }, "*");

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent) return;
    const msg = event.data;
    if (!msg || msg.jsonrpc !== "2.0") return;
    if (msg.method === undefined && pending.has(msg.id)) {
      const { resolve, reject, timer } = pending.get(msg.id);
      pending.delete(msg.id);
      clearTimeout(timer);
      if (msg.error) reject(new Error(msg.error.message || "host error"));
      else resolve(msg.result);
      return;
    }
    if (typeof msg.method !== "string") return;
    const handler = handlers[msg.method];
    Promise.resolve(handler ? handler(msg.params || {}) : undefined).then(
      (result) => { if (msg.id !== undefined) post({ id: msg.id, result: result || {} }); },
      (err) => { if (msg.id !== undefined) post({ id: msg.id, error: { code: -32603, message: String(err) } }); },
    );
  });

  function request(method, params, timeoutMs = 30000) {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { pending.delete(id); reject(new Error(method + " timed out")); }, timeoutMs);
      pending.set(id, { resolve, reject, timer });
      post({ id, method, params });
    });
  }
  const notify = (method, params) => post({ method, params: params || {} });

  function reportSize() {
    const el = document.documentElement;
    notify("ui/notifications/size-changed", { width: el.scrollWidth, height: el.scrollHeight });
  }

  function applyContext(ctx) {
    if (!ctx) return;
    host.hostContext = { ...host.hostContext, ...ctx };
    if (ctx.theme) document.documentElement.dataset.theme = ctx.theme;
  }

  async function connect(name) {
    handlers["ui/notifications/host-context-changed"] = applyContext;
    handlers["ui/resource-teardown"] = () => ({});
    const result = await request("ui/initialize", {
      protocolVersion: PROTOCOL, appInfo: { name, version: "1" }, appCapabilities: {},
    });
    host = { hostCapabilities: {}, hostContext: {}, ...(result || {}) };
    applyContext(host.hostContext);
    notify("ui/notifications/initialized");
    if (window.ResizeObserver) new ResizeObserver(reportSize).observe(document.documentElement);
    reportSize();
    return host;
  }

  return {
    on: (method, fn) => { handlers[method] = fn; },
    connect,
    request,
    notify,
    canCallTools: () => Boolean(host.hostCapabilities && host.hostCapabilities.serverTools),
    canReadResources: () => Boolean(host.hostCapabilities && host.hostCapabilities.serverResources),
    // tools/call through the host: the structured result, or an Error carrying the tool's error text.
    async callTool(name, args) {
      const result = await request("tools/call", { name, arguments: args });
      if (result && result.isError) throw new Error(textOf(result) || name + " failed");
      return result;
    },
    async readJson(uri) {
      const result = await request("resources/read", { uri });
      const first = result && result.contents && result.contents[0];
      return first && typeof first.text === "string" ? JSON.parse(first.text) : null;
    },
  };
})();

function textOf(result) {
  const blocks = (result && result.content) || [];
  return blocks.filter((b) => b.type === "text").map((b) => b.text).join("\n");
}

// DOM helpers: every value from the platform goes in as text (transcripts are callee-controlled).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function fmtTime(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  return d.toISOString().slice(11, 19) + " UTC";
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${(ms / 1000).toFixed(1)} s`;
}
