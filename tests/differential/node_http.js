// A backend on Node's stock `http` module, for tests/differential.rs.
//
// One listener per gatehouse route (the port that answers tells which route gatehouse
// chose); prints `LISTENING <port> ...`; answers every request with what Node resolved:
// `req.url`, its path as the legacy `url.parse` gives it (what Express's router matches),
// as WHATWG `new URL()` normalises it (dot segments, `%2e`, backslashes), and that path
// percent-decoded the way routers decode parameters; and `req.headers` as Node parsed them.
// Exits when its standard input closes.
'use strict';

const http = require('http');
const url = require('url');

function readings(req) {
  const paths = { 'url.parse(req.url).pathname': url.parse(req.url).pathname };
  try {
    const whatwg = new URL(req.url, `http://${req.headers.host || 'localhost'}`).pathname;
    paths['new URL(req.url).pathname'] = whatwg;
    paths['decodeURIComponent(new URL(req.url).pathname)'] = decodeURIComponent(whatwg);
  } catch (e) {
    // A target the WHATWG parser refuses is one a router built on it would refuse too.
  }
  return paths;
}

function handler(req, res) {
  const headers = [];
  for (const [name, value] of Object.entries(req.headers)) {
    for (const v of Array.isArray(value) ? value : [value]) headers.push([name, v]);
  }
  const body = JSON.stringify({
    backend: 'node-http',
    port: req.socket.localPort,
    method: req.method,
    target: req.url,
    paths: readings(req),
    headers,
  });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

async function main() {
  const count = Number(process.argv[2]);
  const ports = [];
  for (let i = 0; i < count; i++) {
    const server = http.createServer(handler);
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    ports.push(server.address().port);
  }
  process.stdout.write(`LISTENING ${ports.join(' ')}\n`);
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

main();
