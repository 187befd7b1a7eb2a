// The real @microsoft/signalr JavaScript client, connecting to a hub through gatehouse.
//
// Usage: node client.js <proxy-url> <token> [browser|node]
//        (or SIGNALR_PROXY_URL, SIGNALR_TOKEN, SIGNALR_MODE in the environment)
//
// It starts a HubConnection on <proxy-url>/hub with `accessTokenFactory` and the WebSockets
// transport, invokes Send("hello"), waits for ReceiveMessage(user, text), stops, prints one
// JSON result line on stdout and exits 0. Any failure, or 15 s without a result, exits 1 with
// the reason on stderr.
//
// Modes — the library itself decides where the token goes on the WebSocket:
//   browser (default): the library's browser code path, which is what web apps run. A
//     browser cannot set headers on a WebSocket, so the client appends
//     `&access_token=<token>` to the upgrade URL. To take that path under Node, the
//     library's platform check is told it is not in Node and a minimal `window.document`
//     is provided; the HTTP side then uses the global `fetch`, and the WebSocket is the
//     `ws` package given as the `WebSocket` option, called exactly as a browser's would be
//     (URL only, no headers).
//   node: the library's own Node code path, which sends `Authorization: Bearer` on the
//     upgrade instead of a query parameter.
// Negotiate always carries `Authorization: Bearer <token>`.
//
// Transport: SIGNALR_TRANSPORT = websockets (default) | longpolling | sse (node mode only:
// the library's browser path wants the browser's EventSource). SIGNALR_CONNECTIONS = N opens
// N connections, all open at once, each sending Send("hello"); the result lists them all.
//
// The token is never printed: URLs in logs and in the result have it replaced by REDACTED.
"use strict";

const path = require("node:path");

const OVERALL_TIMEOUT_MS = 15000;

const proxyUrl = (process.argv[2] || process.env.SIGNALR_PROXY_URL || "").replace(/\/+$/, "");
const token = process.argv[3] || process.env.SIGNALR_TOKEN || "";
const mode = process.argv[4] || process.env.SIGNALR_MODE || "browser";
const transportName = process.env.SIGNALR_TRANSPORT || "websockets";
const connectionCount = Number(process.env.SIGNALR_CONNECTIONS || "1");
/** What the library asked of its WebSocket constructor (token redacted). */
const upgrades = [];

function redact(text) {
  let out = String(text);
  if (token) {
    out = out.split(token).join("REDACTED");
    out = out.split(encodeURIComponent(token)).join("REDACTED");
  }
  return out.replace(/(access_token=)[^&\s'"]*/gi, "$1REDACTED");
}

function fail(message) {
  for (const u of upgrades.filter((u) => u.error)) {
    process.stderr.write(`signalr client: WebSocket ${u.url}: ${u.error}\n`);
  }
  process.stderr.write(`signalr client FAILED: ${redact(message)}\n`);
  process.exit(1);
}

if (!/^https?:\/\//.test(proxyUrl) || !token || !["browser", "node"].includes(mode)
    || !["websockets", "longpolling", "sse"].includes(transportName)
    || !(connectionCount >= 1 && connectionCount <= 64)) {
  fail("usage: node client.js <proxy-url> <token> [browser|node]");
}

const timer = setTimeout(
  () => fail(`no result within ${OVERALL_TIMEOUT_MS / 1000}s`),
  OVERALL_TIMEOUT_MS,
);

const signalRDir = path.dirname(require.resolve("@microsoft/signalr/package.json"));
const signalRVersion = require("@microsoft/signalr/package.json").version;
if (mode === "browser") {
  // Must happen before the library reads it; it is a getter evaluated on every use.
  const { Platform } = require(path.join(signalRDir, "dist/cjs/Utils.js"));
  Object.defineProperty(Platform, "isNode", { get: () => false });
  globalThis.window = globalThis;
  globalThis.document = { addEventListener() {}, removeEventListener() {} };
}
const signalR = require("@microsoft/signalr");
// The same `ws` the library loads itself in Node.
const WsWebSocket = require(require.resolve("ws", { paths: [path.join(signalRDir, "dist/cjs")] }));

class RecordingWebSocket extends WsWebSocket {
  constructor(url, protocols, options) {
    const headers = (options && options.headers) || {};
    const upgrade = {
      url: redact(url),
      queryHasAccessToken: new URL(url).searchParams.has("access_token"),
      headerNames: Object.keys(headers).map((h) => h.toLowerCase()).sort(),
      authorizationIsBearerToken: Object.entries(headers).some(
        ([k, v]) => k.toLowerCase() === "authorization" && v === `Bearer ${token}`,
      ),
    };
    upgrades.push(upgrade);
    super(url, protocols, options);
    // The library drops the reason a WebSocket failed (e.g. "Unexpected server response: 401").
    this.on("error", (error) => {
      upgrade.error = redact(error.message);
    });
  }
}

const logger = {
  log(level, message) {
    if (level >= signalR.LogLevel.Information) {
      process.stderr.write(`[signalr ${signalR.LogLevel[level]}] ${redact(message)}\n`);
    }
  },
};

function build() {
  return new signalR.HubConnectionBuilder()
    .withUrl(`${proxyUrl}/hub`, {
      accessTokenFactory: () => token,
      transport: {
        websockets: signalR.HttpTransportType.WebSockets,
        longpolling: signalR.HttpTransportType.LongPolling,
        sse: signalR.HttpTransportType.ServerSentEvents,
      }[transportName],
      WebSocket: RecordingWebSocket,
    })
    .configureLogging(logger)
    .build();
}

/** Starts one connection; it stays open until `stop`. */
async function open() {
  const connection = build();
  const state = { connection, closeError: undefined };
  connection.onclose((error) => {
    state.closeError = error;
  });
  state.received = new Promise((resolve) => {
    connection.on("ReceiveMessage", (user, text) => resolve({ user, text }));
  });
  await connection.start();
  state.connectionId = connection.connectionId;
  return state;
}

async function main() {
  // All connections are open at once, so each negotiate is balanced against the others.
  const states = [];
  for (let i = 0; i < connectionCount; i++) {
    states.push(await open());
  }
  const results = [];
  for (const state of states) {
    await state.connection.invoke("Send", "hello");
    const { user, text } = await state.received;
    results.push({ connectionId: state.connectionId, user, text });
  }
  for (const state of states) {
    await state.connection.stop();
    if (state.closeError) {
      throw state.closeError;
    }
  }

  clearTimeout(timer);
  const result = {
    ok: true,
    mode,
    transport: transportName,
    signalrVersion: signalRVersion,
    ...results[0],
    connections: results,
    upgrades,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

main().catch((error) => {
  const detail = error && error.statusCode ? ` (HTTP ${error.statusCode})` : "";
  fail(`${(error && error.stack) || error}${detail}`);
});
