// The real @microsoft/signalr browser bundle in a real headless Chromium (Debian's, driven
// by playwright-core from tests/browser): the page at <page-url> loads signalr.js from its
// own origin; in it, N HubConnections to <origin>/hub are started with `accessTokenFactory`
// on one transport and all kept open, each invokes Send("hello") and waits for
// ReceiveMessage; then all stop. Prints one JSON line like client.js's and exits 0, or the
// reason on stderr and exits 1. The token is never printed.
//
// Usage: node browser.js <page-url> <token> <websockets|longpolling|sse> <n>
// Environment: CHROMIUM (default /usr/bin/chromium).
"use strict";

const path = require("node:path");

const { chromium } = require(path.join(__dirname, "../browser/node_modules/playwright-core"));

const [pageUrl, token, transport, count] = process.argv.slice(2);
const OVERALL_TIMEOUT_MS = 45000;

function fail(message) {
  process.stderr.write(`browser.js FAILED: ${String(message).split(token).join("REDACTED")}\n`);
  process.exit(1);
}

setTimeout(() => fail(`no result within ${OVERALL_TIMEOUT_MS / 1000}s`), OVERALL_TIMEOUT_MS).unref();

async function main() {
  if (!pageUrl || !token || !["websockets", "longpolling", "sse"].includes(transport)) {
    fail("usage: node browser.js <page-url> <token> <websockets|longpolling|sse> <n>");
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  try {
    const page = await browser.newPage();
    const console = [];
    page.on("console", (m) => console.push(m.text()));
    await page.goto(pageUrl);
    const connections = await page
      .evaluate(
        async ({ token, transport, n }) => {
          const kinds = {
            websockets: signalR.HttpTransportType.WebSockets,
            longpolling: signalR.HttpTransportType.LongPolling,
            sse: signalR.HttpTransportType.ServerSentEvents,
          };
          const open = [];
          for (let i = 0; i < n; i++) {
            const connection = new signalR.HubConnectionBuilder()
              .withUrl(`${location.origin}/hub`, {
                accessTokenFactory: () => token,
                transport: kinds[transport],
              })
              .configureLogging(signalR.LogLevel.Warning)
              .build();
            const received = new Promise((resolve) =>
              connection.on("ReceiveMessage", (user, text) => resolve({ user, text })),
            );
            await connection.start();
            open.push({ connection, received, connectionId: connection.connectionId });
          }
          const results = [];
          for (const c of open) {
            await c.connection.invoke("Send", "hello");
            const { user, text } = await c.received;
            results.push({ connectionId: c.connectionId, user, text });
          }
          for (const c of open) {
            await c.connection.stop();
          }
          return results;
        },
        { token, transport, n: Number(count || "1") },
      )
      .catch((e) => fail(`${e.message}\npage console:\n${console.join("\n")}`));
    process.stdout.write(`${JSON.stringify({ ok: true, mode: "chromium", transport, connections })}\n`);
  } finally {
    await browser.close();
  }
  process.exit(0);
}

main().catch((e) => fail(e && e.stack ? e.stack : e));
