"""moto's server with one request at a time.

moto's `moto_server` runs werkzeug with a thread per request, and its DynamoDB backend applies
`UpdateItem` as read, modify, write without a lock. Two concurrent `ADD hits :1` can then both read
the same count and both be admitted, which real DynamoDB never allows (every UpdateItem is atomic).
The rate limiter's guarantees are only testable against an emulator that keeps that promise, so
this launcher serialises requests. moto holds the GIL for almost all of a request anyway, so the
lock costs little throughput.

Usage: emulator.py [-H HOST] [-p PORT]
"""

import argparse
import signal
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


class OneAtATime:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # Drain the body inside the lock so the backend's work is finished before the next
            # request starts.
            return [b"".join(self.app(environ, start_response))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, OneAtATime(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
