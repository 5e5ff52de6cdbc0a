"""An OTLP/HTTP receiver that accepts and discards spans, counting what it got.

For scripts/bench-tracing.sh: floe posts protobuf batches to /v1/traces; a GET answers
"<posts> <bytes>" received so far. Not a collector: it decodes nothing.
    python3 scripts/otlp_sink.py PORT
"""

import http.server
import sys
import threading

received = {"posts": 0, "bytes": 0}
lock = threading.Lock()


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        with lock:
            received["posts"] += 1
            received["bytes"] += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        with lock:
            body = f'{received["posts"]} {received["bytes"]}\n'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
