#!/usr/bin/env node
// Opens tests/browser/cors.html (served by tests/cors.rs from its own loopback origin) in
// a real headless Chromium (Debian's, through playwright-core) and waits for the page's
// verdict, window.corsResult. Prints it as one JSON line on stdout with the page's console
// lines, and exits 0; exits 1 when the page gave no verdict within 30 s.
//
// Usage: node cors.js PAGE_URL        Environment: CHROMIUM (default /usr/bin/chromium).
"use strict";

const { chromium } = require("playwright-core");

const VERDICT_TIMEOUT_MS = 30_000;
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

async function main() {
  const url = process.argv[2];
  if (!url) {
    process.stderr.write("usage: node cors.js PAGE_URL\n");
    process.exit(64);
  }
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, timeout: 15_000 });
  const console = [];
  try {
    const page = await browser.newPage();
    page.on("console", (m) => console.push(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => console.push(`[pageerror] ${e.message}`));
    await page.goto(url, { timeout: 10_000 });
    await page.waitForFunction(() => window.corsResult !== undefined, null, {
      timeout: VERDICT_TIMEOUT_MS,
    });
    const result = await page.evaluate(() => window.corsResult);
    process.stdout.write(JSON.stringify({ ...result, console }) + "\n");
  } catch (error) {
    process.stderr.write(`cors.js: ${error.message}\npage console:\n  ${console.join("\n  ")}\n`);
    process.exitCode = 1;
  } finally {
    await browser.close().catch(() => {});
  }
}

main().catch((error) => {
  process.stderr.write(`cors.js: ${error.message}\n`);
  process.exit(1);
});
