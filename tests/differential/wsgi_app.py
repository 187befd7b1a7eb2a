"""A WSGI app on the stock `wsgiref.simple_server`, for tests/differential.rs.

One listener per gatehouse route (the port that answers tells which route gatehouse
chose); prints `LISTENING <port> ...`; answers every request with the environ as WSGI
builds it: `PATH_INFO` (percent-decoded by wsgiref), `QUERY_STRING`, and every `HTTP_*`
key, which is where `X_Auth_Subject` and `X-Auth-Subject` both become
`HTTP_X_AUTH_SUBJECT`. Exits when its standard input closes.
"""

import json
import socketserver
import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def app(environ, start_response):
    body = json.dumps(
        {
            "backend": "python-wsgiref",
            "port": int(environ["SERVER_PORT"]),
            "method": environ["REQUEST_METHOD"],
            "query": environ.get("QUERY_STRING", ""),
            "paths": {"PATH_INFO": environ["PATH_INFO"]},
            "headers": [[k, v] for k, v in environ.items() if k.startswith("HTTP_")],
        }
    ).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


def main():
    servers = [
        make_server("127.0.0.1", 0, app, ThreadingWSGIServer, QuietHandler)
        for _ in range(int(sys.argv[1]))
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("LISTENING " + " ".join(str(s.server_port) for s in servers), flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
