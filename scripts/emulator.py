"""moto's server with one request at a time.

moto's `moto_server` runs werkzeug with a thread per request, and its DynamoDB backend applies
`UpdateItem` as read, modify, write without a lock. Two concurrent `ADD hits :1` can then both read
the same count and both be admitted, which real DynamoDB never allows (every UpdateItem is atomic).
The rate limiter's guarantees are only testable against an emulator that keeps that promise, so
this launcher serialises requests. moto holds the GIL for almost all of a request anyway, so the
lock costs little throughput.

It also keeps DynamoDB's idempotency promise for `TransactWriteItems`, which moto does not: the
AWS SDK sends every transaction with a `ClientRequestToken` and resends it unchanged when an
attempt times out, and DynamoDB answers a repeat within 10 minutes with the first outcome rather
than running the transaction again. Without that, a retried transaction whose first attempt did
commit fails its own conditions (the session it replaced is already gone), which real DynamoDB
never does; on this loaded 2-core machine such timeouts happen.

Usage: emulator.py [-H HOST] [-p PORT]
"""

import argparse
import io
import json
import signal
import sys
import threading
import time

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


# DynamoDB's idempotency window for a transaction's ClientRequestToken.
IDEMPOTENCY_WINDOW_SECONDS = 600


class OneAtATime:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        # ClientRequestToken -> (when, status, headers, body) of a transaction that committed.
        self.transactions = {}

    def __call__(self, environ, start_response):
        with self.lock:
            token = self._transaction_token(environ)
            if token is None:
                # Drain the body inside the lock so the backend's work is finished before the next
                # request starts.
                return [b"".join(self.app(environ, start_response))]
            now = time.monotonic()
            self.transactions = {
                key: entry for key, entry in self.transactions.items() if now - entry[0] < IDEMPOTENCY_WINDOW_SECONDS
            }
            if token in self.transactions:
                _, status, headers, body = self.transactions[token]
                start_response(status, headers)
                return [body]
            seen = {}

            def recording_start_response(status, headers, exc_info=None):
                seen["status"], seen["headers"] = status, headers
                return start_response(status, headers, exc_info)

            body = b"".join(self.app(environ, recording_start_response))
            if seen.get("status", "").startswith("200"):
                self.transactions[token] = (now, seen["status"], seen["headers"], body)
            return [body]

    @staticmethod
    def _transaction_token(environ):
        """The ClientRequestToken of a TransactWriteItems request (its body is put back for moto)."""
        if not environ.get("HTTP_X_AMZ_TARGET", "").endswith(".TransactWriteItems"):
            return None
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            return json.loads(raw).get("ClientRequestToken")
        except (ValueError, AttributeError):
            return None


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
