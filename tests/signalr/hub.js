// A minimal SignalR hub for `tests/signalr.rs` and `tests/signalr_balance.rs`: the JSON hub
// protocol over WebSockets, long polling and server-sent events, on Node's `http` plus `ws`.
// It stands for an unchanged ASP.NET Core hub behind gatehouse, and it records every HTTP
// request and WebSocket upgrade it receives, so the Rust test can check what a backend
// behind gatehouse actually sees. Like ASP.NET Core, it answers 404 for a connection id it
// did not issue, so two instances behind one route work only with affinity.
//
//   POST   /hub/negotiate?negotiateVersion=1 -> negotiate answer (all three transports)
//   GET    /hub?id=<token> (Upgrade)         -> WebSockets transport
//   GET    /hub?id=<token> (Accept: text/event-stream) -> server-sent events transport
//   GET    /hub?id=<token>                   -> long poll (the first answers at once)
//   POST   /hub?id=<token>                   -> messages from the client (long polling, SSE)
//   DELETE /hub?id=<token>                   -> ends a long-polling connection (202)
//   "Send"(text) answers "ReceiveMessage"(user, text), where user is the X-Auth-Subject
//   header seen when the transport connected; "Whoami"() returns this instance's name.
//   GET    /__seen                           -> {"name", "requests", "invocations", "connections"}
//   GET    /hub (Upgrade, no id)             -> a client that skipped negotiation (WebSockets)
//
// With HUB_CORS_ORIGINS (comma-separated origins) the hub applies a CORS policy the way
// ASP.NET Core's `UseCors` does with `WithOrigins(...).AllowAnyHeader().AllowAnyMethod()
// .AllowCredentials()`: it answers preflights from those origins itself (204 echoing the
// requested method and headers) and adds Access-Control-Allow-Origin/-Credentials and
// `Vary: Origin` to its answers for them. Without it, the hub knows nothing of CORS.
//
// Usage: node hub.js [name]   (listens on 127.0.0.1, a free port; prints "LISTENING <port>")
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

const NAME = process.argv[2] || "hub";
const POLL_HOLD_MS = 5000; // how long a poll waits for messages before answering empty

/** Every request and upgrade the hub saw, in order (`/__seen` itself excluded). */
const requests = [];
/** Every hub method call, with the user the connection was authenticated as. */
const invocations = [];
/** connectionToken -> Connection, from negotiate until the connection ends. */
const connections = new Map();
/** Every connection that got a transport: {connectionId, transport, user}. */
const connected = [];

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

function notFound(res) {
  // What ASP.NET Core answers for an id it does not know.
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("No Connection with that ID");
}

/**
 * One SignalR connection, whatever its transport: `output` is how messages leave (set when
 * the transport connects), `receive` takes what the client sent.
 */
class Connection {
  constructor(connectionId) {
    this.connectionId = connectionId;
    this.transport = null;
    this.user = null;
    this.handshakeDone = false;
    this.buffer = "";
    this.closed = false;
    this.output = null;
    this.keepAlive = null;
  }

  start(transport, user, output) {
    this.transport = transport;
    this.user = user;
    this.output = output;
    connected.push({ connectionId: this.connectionId, transport, user });
    this.keepAlive = setInterval(() => {
      if (this.handshakeDone) {
        this.send({ type: MessageType.Ping });
      }
    }, KEEP_ALIVE_MS);
  }

  send(message) {
    this.output(JSON.stringify(message) + RS);
  }

  end() {
    this.closed = true;
    clearInterval(this.keepAlive);
    for (const [token, c] of connections) {
      if (c === this) connections.delete(token);
    }
  }

  receive(text) {
    this.buffer += text;
    let end;
    while ((end = this.buffer.indexOf(RS)) >= 0) {
      const frame = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 1);
      let message;
      try {
        message = JSON.parse(frame);
      } catch {
        return "invalid JSON";
      }
      if (!this.handshakeDone) {
        if (message.protocol !== "json" || message.version !== 1) {
          this.output(JSON.stringify({ error: `protocol ${message.protocol} v${message.version} is not supported` }) + RS);
          return "unsupported protocol";
        }
        this.handshakeDone = true;
        this.output("{}" + RS);
        continue;
      }
      if (this.handle(message) === "close") return "closed";
    }
    return null;
  }

  handle(message) {
    const send = (m) => this.send(m);
    switch (message.type) {
      case MessageType.Invocation: {
        const { connectionId, user } = this;
        invocations.push({ connectionId, user, hub: NAME, target: message.target, arguments: message.arguments });
        const id = message.invocationId;
        if (message.target === "Send") {
          const [text] = message.arguments || [];
          send({ type: MessageType.Invocation, target: "ReceiveMessage", arguments: [user, text] });
          if (id !== undefined) {
            send({ type: MessageType.Completion, invocationId: id, result: null });
          }
        } else if (message.target === "Whoami" && id !== undefined) {
          send({ type: MessageType.Completion, invocationId: id, result: NAME });
        } else if (id !== undefined) {
          send({ type: MessageType.Completion, invocationId: id, error: `Unknown hub method '${message.target}'` });
        }
        return null;
      }
      case MessageType.StreamInvocation:
        send({ type: MessageType.Completion, invocationId: message.invocationId, error: "streaming is not supported" });
        return null;
      case MessageType.Close:
        return "close";
      default:
        // Pings, stream items, cancellations, acks: nothing this hub needs to act on.
        return null;
    }
  }
}

function negotiate(res, url) {
  const negotiateVersion = Number(url.searchParams.get("negotiateVersion") || "0");
  const connectionId = crypto.randomBytes(16).toString("base64url");
  const connectionToken = crypto.randomBytes(16).toString("base64url");
  connections.set(negotiateVersion >= 1 ? connectionToken : connectionId, new Connection(connectionId));
  const body = {
    negotiateVersion: negotiateVersion >= 1 ? 1 : 0,
    connectionId,
    availableTransports: [
      { transport: "WebSockets", transferFormats: ["Text", "Binary"] },
      { transport: "ServerSentEvents", transferFormats: ["Text"] },
      { transport: "LongPolling", transferFormats: ["Text", "Binary"] },
    ],
  };
  if (negotiateVersion >= 1) {
    body.connectionToken = connectionToken;
  }
  sendJson(res, 200, body);
}

/** Long polling: queued output, and at most one poll waiting for it. */
function startLongPolling(conn, req) {
  conn.queue = [];
  conn.waiting = null;
  conn.start("LongPolling", req.headers["x-auth-subject"] || null, (text) => {
    conn.queue.push(text);
    flushPoll(conn);
  });
}

function flushPoll(conn) {
  const waiting = conn.waiting;
  if (!waiting) return;
  conn.waiting = null;
  clearTimeout(waiting.timer);
  if (conn.closed) {
    waiting.res.writeHead(204);
    waiting.res.end();
    return;
  }
  const text = conn.queue.join("");
  conn.queue = [];
  waiting.res.writeHead(200, { "content-type": "application/octet-stream", "content-length": Buffer.byteLength(text) });
  waiting.res.end(text);
}

function poll(conn, req, res) {
  if (conn.transport === null) {
    // The first poll answers at once: it tells the client the transport is connected.
    startLongPolling(conn, req);
    res.writeHead(200, { "content-length": 0 });
    res.end();
    return;
  }
  if (conn.transport !== "LongPolling") {
    sendJson(res, 400, { error: "this connection uses another transport" });
    return;
  }
  if (conn.waiting) flushPoll(conn);
  conn.waiting = { res, timer: setTimeout(() => flushPoll(conn), POLL_HOLD_MS) };
  if (conn.queue.length > 0 || conn.closed) flushPoll(conn);
}

function serverSentEvents(conn, req, res) {
  if (conn.transport !== null) {
    sendJson(res, 400, { error: "this connection already has a transport" });
    return;
  }
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  res.write(":\r\n");
  conn.start("ServerSentEvents", req.headers["x-auth-subject"] || null, (text) => {
    res.write(text.split("\n").map((line) => `data: ${line}\r\n`).join("") + "\r\n");
  });
  res.on("close", () => conn.end());
  conn.sse = res;
}

function hubRequest(req, res, url, body) {
  const conn = connections.get(url.searchParams.get("id") || "");
  if (!conn) {
    notFound(res);
    return;
  }
  if (req.method === "GET" && (req.headers.accept || "").includes("text/event-stream")) {
    serverSentEvents(conn, req, res);
  } else if (req.method === "GET") {
    poll(conn, req, res);
  } else if (req.method === "POST") {
    const ended = conn.receive(body.toString("utf8"));
    res.writeHead(200, { "content-length": 0 });
    res.end();
    if (ended) finish(conn);
  } else if (req.method === "DELETE") {
    finish(conn);
    res.writeHead(202, { "content-length": 0 });
    res.end();
  } else {
    sendJson(res, 405, { error: "method not allowed" });
  }
}

function finish(conn) {
  conn.end();
  if (conn.transport === "LongPolling") flushPoll(conn);
  if (conn.sse) conn.sse.end();
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://hub.invalid");
  if (req.method === "GET" && url.pathname === "/__seen") {
    sendJson(res, 200, { name: NAME, requests, invocations, connections: connected });
    return;
  }
  record("http", req);
  if (cors(req, res)) {
    return;
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    if (req.method === "POST" && url.pathname === `${HUB_PATH}/negotiate`) {
      negotiate(res, url);
    } else if (url.pathname === HUB_PATH) {
      hubRequest(req, res, url, Buffer.concat(chunks));
    } else {
      sendJson(res, 404, { error: "not found" });
    }
  });
});

const wss = new WebSocketServer({ noServer: true });

server.on("upgrade", (req, socket, head) => {
  record("upgrade", req);
  const url = new URL(req.url, "http://hub.invalid");
  const id = url.searchParams.get("id");
  // No id at all is a client that skipped negotiation (WebSockets only), which ASP.NET
  // Core accepts as a new connection; an id must be one this hub issued.
  const conn = id === null ? new Connection(crypto.randomBytes(16).toString("base64url")) : connections.get(id);
  if (url.pathname !== HUB_PATH || !conn || conn.transport !== null) {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    return;
  }
  const user = req.headers["x-auth-subject"] || null;
  wss.handleUpgrade(req, socket, head, (ws) => {
    conn.start("WebSockets", user, (text) => ws.send(text));
    ws.on("close", () => conn.end());
    ws.on("error", () => conn.end());
    ws.on("message", (data) => {
      const ended = conn.receive(data.toString("utf8"));
      if (ended === "invalid JSON") ws.close(1002, "invalid JSON");
      else if (ended) ws.close(1000);
    });
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
// The test owns this process; if it goes away without killing us, so do we.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
