"""A stock `http.server` backend for tests/differential.rs.

Listens on 127.0.0.1 on as many ports as it is given routes (one listener per gatehouse
route, so the port that answers tells which route gatehouse chose), prints
`LISTENING <port> <port> ...` and answers every request with what the framework itself
resolved: `self.path` as sent, the path `SimpleHTTPRequestHandler.translate_path` would
serve a file from (relative to its directory), and `self.headers` as parsed.
Exits when its standard input closes.
"""

import http.server
import json
import os
import sys
import threading
import urllib.parse

ROOT = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def report(self):
        served = os.path.relpath(self.translate_path(self.path), ROOT)
        served = "/" if served == "." else "/" + served
        body = json.dumps(
            {
                "backend": "python-http.server",
                "port": self.server.server_address[1],
                "method": self.command,
                "target": self.path,
                "paths": {
                    "urlsplit(self.path).path": urllib.parse.urlsplit(self.path).path,
                    "translate_path(self.path)": served,
                },
                "headers": [[k, v] for k, v in self.headers.items()],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = report

    def log_message(self, *args):
        pass


def main():
    servers = [
        http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        for _ in range(int(sys.argv[1]))
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("LISTENING " + " ".join(str(s.server_address[1]) for s in servers), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
