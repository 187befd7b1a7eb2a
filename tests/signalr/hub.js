// A minimal SignalR hub for `tests/signalr.rs`: the JSON hub protocol over the WebSockets
// transport only, on Node's `http` plus `ws`. It stands for an unchanged ASP.NET Core hub
// behind gatehouse, and it records every HTTP request and WebSocket upgrade it receives, so
// the Rust test can check what a backend behind gatehouse actually sees.
//
//   POST /hub/negotiate?negotiateVersion=1  -> negotiate answer (WebSockets only)
//   GET  /hub[?id=<connectionToken>] (Upgrade) -> JSON hub protocol (no id: skipNegotiation); "Send"(text) answers
//                                               "ReceiveMessage"(user, text), where user is the
//                                               X-Auth-Subject header seen at the upgrade
//   GET  /__seen                             -> {"requests": [...], "invocations": [...]}
//
// With HUB_CORS_ORIGINS (comma-separated origins) the hub applies a CORS policy the way
// ASP.NET Core's `UseCors` does with `WithOrigins(...).AllowAnyHeader().AllowAnyMethod()
// .AllowCredentials()`: it answers preflights from those origins itself (204 echoing the
// requested method and headers) and adds Access-Control-Allow-Origin/-Credentials and
// `Vary: Origin` to its answers for them. Without it, the hub knows nothing of CORS.
//
// Usage: node hub.js   (listens on 127.0.0.1, a free port; prints "LISTENING <port>")
"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { WebSocketServer } = require("ws");

const RS = "\x1e"; // SignalR record separator
const HUB_PATH = "/hub";
const KEEP_ALIVE_MS = 15000; // what ASP.NET Core sends by default

const MessageType = {
  Invocation: 1,
  StreamItem: 2,
  Completion: 3,
  StreamInvocation: 4,
  CancelInvocation: 5,
  Ping: 6,
  Close: 7,
};

/** Every request and upgrade the hub saw, in order (`/__seen` itself excluded). */
const requests = [];
/** Every hub method call, with the user the connection was authenticated as. */
const invocations = [];
/** connectionToken -> connectionId, from negotiate until the WebSocket arrives. */
const negotiated = new Map();

function record(kind, req) {
  requests.push({
    kind,
    method: req.method,
    url: req.url,
    headers: { ...req.headers },
  });
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

const corsOrigins = (process.env.HUB_CORS_ORIGINS || "")
  .split(",")
  .map((o) => o.trim())
  .filter((o) => o.length > 0);

/** ASP.NET Core's CORS middleware: true when it answered the request (a preflight). */
function cors(req, res) {
  const origin = req.headers.origin;
  if (!origin || !corsOrigins.includes(origin)) {
    return false;
  }
  res.setHeader("access-control-allow-origin", origin);
  res.setHeader("access-control-allow-credentials", "true");
  res.setHeader("vary", "Origin");
  const method = req.headers["access-control-request-method"];
  if (req.method !== "OPTIONS" || !method) {
    return false;
  }
  res.setHeader("access-control-allow-methods", method);
  const headers = req.headers["access-control-request-headers"];
  if (headers) {
    res.setHeader("access-control-allow-headers", headers);
  }
  res.writeHead(204);
  res.end();
  return true;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://hub.invalid");
  if (req.method === "GET" && url.pathname === "/__seen") {
    sendJson(res, 200, { requests, invocations });
    return;
  }
  record("http", req);
  if (cors(req, res)) {
    return;
  }
  // Drain any body; negotiate has none that matters.
  req.resume();
  req.on("end", () => {
    if (req.method === "POST" && url.pathname === `${HUB_PATH}/negotiate`) {
      const negotiateVersion = Number(url.searchParams.get("negotiateVersion") || "0");
      const connectionId = crypto.randomBytes(16).toString("base64url");
      const connectionToken = crypto.randomBytes(16).toString("base64url");
      negotiated.set(negotiateVersion >= 1 ? connectionToken : connectionId, connectionId);
      const body = {
        negotiateVersion: negotiateVersion >= 1 ? 1 : 0,
        connectionId,
        availableTransports: [{ transport: "WebSockets", transferFormats: ["Text", "Binary"] }],
      };
      if (negotiateVersion >= 1) {
        body.connectionToken = connectionToken;
      }
      sendJson(res, 200, body);
      return;
    }
    if (url.pathname === HUB_PATH) {
      // Long polling and server-sent events are not offered by this hub.
      sendJson(res, 400, { error: "this hub speaks WebSockets only" });
      return;
    }
    sendJson(res, 404, { error: "not found" });
  });
});

const wss = new WebSocketServer({ noServer: true });

server.on("upgrade", (req, socket, head) => {
  record("upgrade", req);
  const url = new URL(req.url, "http://hub.invalid");
  const id = url.searchParams.get("id");
  // No id at all is a client that skipped negotiation (WebSockets only), which ASP.NET
  // Core accepts as a new connection; an id must be one this hub issued.
  if (url.pathname !== HUB_PATH || (id !== null && !negotiated.has(id))) {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }
  const connectionId = id === null ? crypto.randomBytes(16).toString("base64url") : negotiated.get(id);
  negotiated.delete(id);
  const user = req.headers["x-auth-subject"] || null;
  wss.handleUpgrade(req, socket, head, (ws) => session(ws, connectionId, user));
});

function session(ws, connectionId, user) {
  let handshakeDone = false;
  let buffer = "";
  const send = (message) => ws.send(JSON.stringify(message) + RS);
  const keepAlive = setInterval(() => {
    if (handshakeDone) {
      send({ type: MessageType.Ping });
    }
  }, KEEP_ALIVE_MS);
  ws.on("close", () => clearInterval(keepAlive));
  ws.on("error", () => clearInterval(keepAlive));

  ws.on("message", (data) => {
    buffer += data.toString("utf8");
    let end;
    while ((end = buffer.indexOf(RS)) >= 0) {
      const text = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      let message;
      try {
        message = JSON.parse(text);
      } catch {
        ws.close(1002, "invalid JSON");
        return;
      }
      if (!handshakeDone) {
        if (message.protocol !== "json" || message.version !== 1) {
          ws.send(JSON.stringify({ error: `protocol ${message.protocol} v${message.version} is not supported` }) + RS);
          ws.close(1000);
          return;
        }
        handshakeDone = true;
        ws.send("{}" + RS);
        continue;
      }
      handle(message);
    }
  });

  function handle(message) {
    switch (message.type) {
      case MessageType.Invocation: {
        invocations.push({ connectionId, user, target: message.target, arguments: message.arguments });
        const id = message.invocationId;
        if (message.target === "Send") {
          const [text] = message.arguments || [];
          send({ type: MessageType.Invocation, target: "ReceiveMessage", arguments: [user, text] });
          if (id !== undefined) {
            send({ type: MessageType.Completion, invocationId: id, result: null });
          }
        } else if (id !== undefined) {
          send({ type: MessageType.Completion, invocationId: id, error: `Unknown hub method '${message.target}'` });
        }
        break;
      }
      case MessageType.StreamInvocation:
        send({ type: MessageType.Completion, invocationId: message.invocationId, error: "streaming is not supported" });
        break;
      case MessageType.Ping:
        // Pings are keep-alives, not requests: nothing to answer. Our own come on a timer.
        break;
      case MessageType.Close:
        ws.close(1000);
        break;
      default:
        // Stream items, cancellations, acks: nothing this hub needs to act on.
        break;
    }
  }
}

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
// The test owns this process; if it goes away without killing us, so do we.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
