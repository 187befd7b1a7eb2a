#!/usr/bin/env node
// Drives the `gatehouse demo` page in a real headless Chromium (Debian's, through
// playwright-core; never a downloaded browser):
//
//   1. open DEMO_URL?ttl=6 and wait until the page's WebSocket is open;
//   2. type a message into #text, click #send, and wait for the hub to send it back
//      signed with the token's subject (guest-NNN);
//   3. in the page, open a second WebSocket with the same ticket: it must not open
//      (the proxy refuses the spent ticket; browsers report a refused upgrade as 1006);
//   4. wait for the page's own socket to be closed by the proxy with 4401 when the token
//      expires, and for #status to say "token expired";
//   5. optionally take a screenshot of the page after the expiry.
//
// Usage: node demo.js DEMO_URL [SCREENSHOT.png]
// Prints one JSON line ({"ok":true,...} on stdout) and exits 0, or prints the error
// (and {"ok":false,...} on stdout) and exits non-zero.
// Environment: CHROMIUM (default /usr/bin/chromium).

"use strict";

const { chromium } = require("playwright-core");

const OVERALL_TIMEOUT_MS = 30_000;
const OPEN_TIMEOUT_MS = 10_000;
const ECHO_TIMEOUT_MS = 5_000;
const REPLAY_TIMEOUT_MS = 5_000;
// The proxy closes at exp + the issuer's leeway (1 s in the demo config), so about 7 s after
// the token was minted (exp has whole-second precision): 15 s leaves room for a loaded machine.
const EXPIRY_TIMEOUT_MS = 15_000;
const TTL_SECONDS = 6;

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let browser = null;
const started = Date.now();
const console_lines = [];

function finish(code, result) {
  process.stdout.write(JSON.stringify(result) + "\n");
  const close = browser ? browser.close().catch(() => {}) : Promise.resolve();
  // Never let a stuck browser keep the process alive past its verdict.
  setTimeout(() => process.exit(code), 3_000).unref();
  close.then(() => process.exit(code));
}

function fail(step, error, extra = {}) {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`demo.js: FAILED at ${step}: ${message}\n`);
  if (console_lines.length) {
    process.stderr.write(`page console:\n  ${console_lines.join("\n  ")}\n`);
  }
  finish(1, { ok: false, step, error: message, elapsed_ms: Date.now() - started, ...extra });
}

async function pageState(page) {
  try {
    return await page.evaluate(() => ({
      status: document.getElementById("status").textContent,
      demo: window.gatehouseDemo
        ? {
            open: window.gatehouseDemo.open === true,
            closed: window.gatehouseDemo.closed,
            messages: window.gatehouseDemo.messages,
          }
        : null,
    }));
  } catch (e) {
    return { unavailable: String(e) };
  }
}

async function main() {
  const [url, screenshot] = process.argv.slice(2);
  if (!url) {
    process.stderr.write("usage: node demo.js DEMO_URL [SCREENSHOT.png]\n");
    process.exit(64);
  }
  const target = new URL(url);
  target.searchParams.set("ttl", String(TTL_SECONDS));

  const overall = setTimeout(
    () => fail("overall", new Error(`no verdict after ${OVERALL_TIMEOUT_MS / 1000} s`)),
    OVERALL_TIMEOUT_MS,
  );
  overall.unref();

  let step = "launch";
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, timeout: 15_000 });
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  page.on("console", (m) => console_lines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console_lines.push(`[pageerror] ${e.message}`));

  try {
    step = "open page";
    const response = await page.goto(target.href, { timeout: OPEN_TIMEOUT_MS });
    if (!response || response.status() !== 200) {
      throw new Error(`GET ${target.href} answered ${response ? response.status() : "nothing"}`);
    }

    step = "websocket open";
    await page.waitForFunction(() => window.gatehouseDemo && window.gatehouseDemo.open === true, null, {
      timeout: OPEN_TIMEOUT_MS,
    });
    const openedAt = Date.now();
    const ticket = await page.evaluate(() => window.gatehouseDemo.ticket);
    if (typeof ticket !== "string" || ticket.length === 0) {
      throw new Error(`window.gatehouseDemo.ticket is ${JSON.stringify(ticket)}`);
    }

    step = "send and echo";
    const text = `hello from chromium ${process.pid}-${Date.now()}`;
    await page.fill("#text", text);
    await page.click("#send");
    await page.waitForFunction(
      (t) => window.gatehouseDemo.messages.some((m) => m.text === t),
      text,
      { timeout: ECHO_TIMEOUT_MS },
    );
    const echoed = await page.evaluate(
      (t) => window.gatehouseDemo.messages.find((m) => m.text === t),
      text,
    );
    if (!/^guest-\d{1,3}$/.test(echoed.from)) {
      throw new Error(`the hub signed the message with ${JSON.stringify(echoed.from)}, not guest-NNN`);
    }
    const inputAfterSend = await page.inputValue("#text");
    if (inputAfterSend !== "") {
      throw new Error(`#text still holds ${JSON.stringify(inputAfterSend)} after sending`);
    }

    step = "ticket replay";
    const replay = await page.evaluate(
      ({ wait }) =>
        new Promise((resolve) => {
          const demo = window.gatehouseDemo;
          const scheme = location.protocol === "https:" ? "wss" : "ws";
          const url = `${scheme}://${location.host}/chat?ticket=${encodeURIComponent(demo.ticket)}`;
          const seen = { opened: false, errored: false, closed: false, code: null, reason: null };
          const socket = new WebSocket(url);
          const timer = setTimeout(() => resolve({ ...seen, timed_out: true }), wait);
          socket.onopen = () => {
            seen.opened = true;
            socket.close();
          };
          socket.onerror = () => {
            seen.errored = true;
          };
          socket.onclose = (event) => {
            clearTimeout(timer);
            resolve({ ...seen, closed: true, code: event.code, reason: event.reason });
          };
        }),
      { wait: REPLAY_TIMEOUT_MS },
    );
    if (replay.opened) {
      throw new Error(`a second WebSocket with the same ticket OPENED: ${JSON.stringify(replay)}`);
    }
    if (!replay.closed || replay.code !== 1006) {
      throw new Error(`the replayed ticket did not fail as a refused upgrade (1006): ${JSON.stringify(replay)}`);
    }
    const stillOpen = await page.evaluate(() => window.gatehouseDemo.closed === null);
    if (!stillOpen) {
      throw new Error("the page's own socket closed when the replay was refused");
    }

    step = "expiry 4401";
    await page.waitForFunction(
      () =>
        window.gatehouseDemo.closed !== null &&
        document.getElementById("status").textContent.includes("token expired"),
      null,
      { timeout: EXPIRY_TIMEOUT_MS },
    );
    const expiredAfterOpenMs = Date.now() - openedAt;
    const after = await pageState(page);
    if (after.demo.closed.code !== 4401) {
      throw new Error(`the page's socket closed with ${JSON.stringify(after.demo.closed)}, not 4401`);
    }
    const controls = await page.evaluate(() => ({
      text: document.getElementById("text").disabled,
      send: document.getElementById("send").disabled,
      statusClass: document.getElementById("status").className,
    }));
    if (!controls.text || !controls.send) {
      throw new Error(`the input stays enabled after the close: ${JSON.stringify(controls)}`);
    }

    step = "screenshot";
    if (screenshot) {
      await page.screenshot({ path: screenshot, fullPage: true });
    }

    clearTimeout(overall);
    finish(0, {
      ok: true,
      url: target.href,
      subject: echoed.from,
      sent: text,
      messages: after.demo.messages,
      replay,
      closed: after.demo.closed,
      status: after.status,
      expired_after_open_ms: expiredAfterOpenMs,
      status_class: controls.statusClass,
      screenshot: screenshot || null,
      elapsed_ms: Date.now() - started,
    });
  } catch (error) {
    clearTimeout(overall);
    const state = await pageState(page);
    if (screenshot) {
      await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
    }
    fail(step, error, { page: state });
  }
}

main().catch((error) => fail("launch", error));
