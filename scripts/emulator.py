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

With `--state DIR` it keeps its state across restarts, which moto cannot do (5.2.5 has no
persistence; its maintainers point to pickling the backends): the DynamoDB, KMS and Secrets
Manager backends, the only services Kavach uses, are pickled to DIR/emulator.snapshot. The
snapshot is taken under the request lock, so it holds exactly the requests answered so far; it is
written to a temporary file, fsynced and renamed over the old one, so a kill at any moment leaves
the previous snapshot whole. It is taken every `--snapshot-interval` seconds when a write was
answered since the last one, and once more on SIGINT or SIGTERM. After a kill -9, what is lost is
at most the writes answered in the last interval plus the time one snapshot takes to write (see
README, "Local state"). Pickling costs about 0.1 ms per stored item, and requests wait for it:
once one takes more than a fifth of the interval, snapshots are spaced to four times their cost
instead, and the log says so. The KMS key material and the secret's values are in the file, so it
is 0600 and never leaves the machine. A snapshot written by another moto or Python is refused, not
guessed at. Without `--state` nothing is read or written: each start is empty (scripts/test).

The transaction-token cache above is not persisted: an SDK retry does not outlive a restart.

It keeps HTTP/1.1 connections alive, as DynamoDB does, so the SDK reuses them: werkzeug's server
closes every connection after one response (its request handler cannot tell where an unread body
ends), so each call paid a TCP handshake and the SDK's connection setup, and the per-request CPU
`scripts/bench` measured was mostly that. Here the handler reads every request body to its end
before the application sees it, so the next request line is always where the stream stands, and
only then keeps the connection open.

moto's `TransactWriteItems` deep-copies every table a transaction names before it starts, to roll
back on a failed condition, so a transaction's cost grew with the table (a sandbox with a few
thousand orders spent most of each placeorder copying them). It is replaced here by the same steps
with an undo journal of only the items the transaction touches: each is copied before its write,
and on a cancelled transaction put back (or removed, if it was new), with the table's stream
records from the cancelled writes dropped. Requests are serialised (above), so nothing can see the
items between a write and its undo: the transaction stays all or nothing.

`--close-connections` answers as werkzeug's server does, one response per connection: only for
`scripts/bench` to show what keeping them alive saves.

Usage: emulator.py [-H HOST] [-p PORT] [--state DIR] [--snapshot-interval SECONDS] [--close-connections]
"""

import argparse
import copy
import inspect
import io
import json
import os
import pickle
import signal
import sys
import threading
import time
import traceback

import moto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from moto.backends import get_backend
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


# DynamoDB's idempotency window for a transaction's ClientRequestToken.
IDEMPOTENCY_WINDOW_SECONDS = 600


# The services whose state is kept with --state: everything Kavach calls.
PERSISTED_SERVICES = ("dynamodb", "kms", "secretsmanager")
SNAPSHOT_NAME = "emulator.snapshot"
SNAPSHOT_MAGIC = b"KAVACH-EMULATOR-STATE 1\n"

# Actions that change nothing a snapshot holds: answering them does not make one due. Anything not
# listed (an unknown action included) counts as a write.
READ_ONLY_ACTIONS = frozenset(
    {
        "DynamoDB_20120810.GetItem",
        "DynamoDB_20120810.BatchGetItem",
        "DynamoDB_20120810.Query",
        "DynamoDB_20120810.Scan",
        "DynamoDB_20120810.DescribeTable",
        "DynamoDB_20120810.DescribeTimeToLive",
        "DynamoDB_20120810.ListTables",
        "DynamoDB_20120810.TransactGetItems",
        "TrentService.Decrypt",
        "TrentService.DescribeKey",
        "TrentService.ListAliases",
        "TrentService.ListKeys",
        "secretsmanager.GetSecretValue",
        "secretsmanager.DescribeSecret",
        "secretsmanager.ListSecrets",
        "secretsmanager.GetRandomPassword",
    }
)


# moto's TransactWriteItems is mirrored below (`transact_write_items`) from this release.
MIRRORED_MOTO = "5.2.5"

# An idle kept-alive connection is closed after this long. It is above the SDK's own idle timeout
# (hyper's default for pooled connections, 90 s), so the client, not the server, closes idle ones, as with DynamoDB:
# a request never meets a connection the server has just dropped.
IDLE_CONNECTION_SECONDS = 300


class KeepAliveRequestHandler(MotoRequestHandler):
    """moto's request handler, with HTTP/1.1 persistent connections (see the module's doc)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_SECONDS
    # The headers and the body go out in two writes: with Nagle's algorithm the body would wait
    # for the client's delayed ACK of the headers (40 ms on Linux) once the connection stays open.
    disable_nagle_algorithm = True

    def make_environ(self):
        environ = super().make_environ()
        # The whole body, read now: whatever the application leaves unread would otherwise be
        # taken for the next request line. (Chunked bodies come through werkzeug's decoder.)
        if environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read()
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            if len(body) < length:
                # The client went away mid-body: nothing more can be read from this connection.
                self.close_connection = True
        environ["wsgi.input"] = io.BytesIO(body)
        return environ

    def run_wsgi(self):
        """Answers one request. werkzeug's own version ends every response with `Connection: close`
        and then reads whatever arrives within 10 ms as leftover body: on a kept-alive connection,
        that is the next request. Every response here is buffered anyway (OneAtATime), so it is
        sent whole with its Content-Length, and the connection stays open unless the client asked
        otherwise (http.server has decided that from the request line and headers)."""
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.environ = self.make_environ()
        answer = {}

        def start_response(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers
            return lambda data: answer.setdefault("written", []).append(data)

        try:
            iterable = self.server.app(environ, start_response)
            try:
                body = b"".join(answer.pop("written", [])) + b"".join(iterable)
            finally:
                if hasattr(iterable, "close"):
                    iterable.close()
        except Exception:  # noqa: BLE001 - a failed request answers 500, the server keeps serving
            traceback.print_exc()
            answer = {"status": "500 INTERNAL SERVER ERROR", "headers": [("Content-Type", "text/plain")]}
            body = b"Internal Server Error"
            self.close_connection = True
        code, _, reason = answer["status"].partition(" ")
        self.send_response(int(code), reason)
        for name, value in answer["headers"]:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        bodiless = environ["REQUEST_METHOD"] == "HEAD" or int(code) in (204, 304) or int(code) < 200
        if not bodiless:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not bodiless:
            self.wfile.write(body)
        self.wfile.flush()


# moto's Table.query reads every item of the table (and sorts them) for each Query, then keeps
# the partition's: a Query's cost grows with the table, so the sandbox's per-account reads slowed
# with every order any account placed. A Query on the table itself (no index) looks only at its
# partition here; queries on an index still read the table, as moto does (the sparse `resting`
# index is read by the fill engine alone). Requests run one at a time (OneAtATime), so the
# partition a query is confined to is a plain attribute of the table for the call.
QUERY_PARTITION = "_kavach_query_partition"


def partition_items(original_all_items):
    def all_items(self):
        partition = getattr(self, QUERY_PARTITION, None)
        if partition is None:
            return original_all_items(self)
        hash_set = self.items.get(partition)
        if hash_set is None:
            return []
        return list(hash_set.values()) if self.range_key_attr else [hash_set]

    return all_items


def partition_query(original_query):
    parameters = inspect.signature(original_query)

    def query(self, *args, **kwargs):
        call = parameters.bind(self, *args, **kwargs)
        hash_key = call.arguments.get("hash_key")
        if call.arguments.get("index_name") is not None or hash_key is None:
            return original_query(self, *args, **kwargs)
        setattr(self, QUERY_PARTITION, hash_key)
        try:
            return original_query(self, *args, **kwargs)
        finally:
            setattr(self, QUERY_PARTITION, None)

    return query


def transact_write_items(self, transact_items):
    """moto 5.2.5's `DynamoDBBackend.transact_write_items`, the same steps and the same errors,
    with its whole-table deep copies replaced by an undo journal of the items it touches."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    # (table, hash key, range key, the item before the write or None), in the order written.
    journal = []
    # How many stream records each touched table had, so a rollback drops those of its writes.
    streams = {}
    target_items = set()

    def check_unicity(table_name, key):
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    def remember(table_name, key, current):
        table = self.get_table(table_name)
        hash_key, range_key = self.get_keys_value(table, key)
        journal.append((table, hash_key, range_key, copy.deepcopy(current)))
        if table.stream_shard is not None and table_name not in streams:
            streams[table_name] = (table, len(table.stream_shard.items))

    def rollback():
        for table, hash_key, range_key, before in reversed(journal):
            if range_key is not None:
                if before is None:
                    table.items[hash_key].pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = before
            elif before is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = before
        for table, records in streams.values():
            del table.stream_shard.items[records:]

    errors = []  # [(Code, Message, Item), ..]
    for item in transact_items:
        original_item = None
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            expression_attribute_names = op.get("ExpressionAttributeNames")
            expression_attribute_values = op.get("ExpressionAttributeValues")
            return_values_on_condition_check_failure = op.get("ReturnValuesOnConditionCheckFailure")
            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            check_unicity(table_name, key)
            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition_op = get_filter_expression(
                    condition_expression, expression_attribute_names, expression_attribute_values
                )
                if not condition_op.expr(current):
                    if return_values_on_condition_check_failure == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            if op_type != "ConditionCheck":
                remember(table_name, key, current)
            if op_type == "Put":
                self.put_item(
                    table_name,
                    op["Item"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            rollback()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:  # noqa: BLE001 - as moto: any other failure cancels the transaction
            errors.append((type(e).__name__, str(e), original_item))
    if any(code is not None for code, _, _ in errors):
        rollback()
        raise TransactionCanceledException(errors)


class OneAtATime:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        # ClientRequestToken -> (when, status, headers, body) of a transaction that committed.
        self.transactions = {}
        # Requests that may have changed state, counted under the lock (see Snapshots).
        self.writes = 0

    def __call__(self, environ, start_response):
        with self.lock:
            if environ.get("HTTP_X_AMZ_TARGET", "") not in READ_ONLY_ACTIONS:
                self.writes += 1
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


class StatePickler(pickle.Pickler):
    """moto gives every KMS key an RSA or EC private key (cryptography's, which cannot be pickled):
    those travel as PKCS#8 DER and are loaded back by StateUnpickler."""

    def persistent_id(self, obj):
        if isinstance(obj, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            der = obj.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            return ("private-key", der)
        return None


class StateUnpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        kind, der = pid
        if kind != "private-key":
            raise pickle.UnpicklingError(f"unknown persistent object {kind!r}")
        return serialization.load_der_private_key(der, password=None)


def snapshot_header():
    return {
        "moto": moto.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "services": list(PERSISTED_SERVICES),
    }


class Snapshots:
    """Keeps DIR/emulator.snapshot in step with the emulator's state (see the module's doc)."""

    def __init__(self, app: OneAtATime, directory: str, interval: float):
        self.app = app
        self.directory = directory
        self.path = os.path.join(directory, SNAPSHOT_NAME)
        self.interval = interval
        # Serialises writers (the periodic thread and the final snapshot); `saved` is the write
        # count the file on disk holds, so an older snapshot never replaces a newer one.
        self.writing = threading.Lock()
        self.saved = 0
        # How long the last snapshot held the request lock, which bounds how often one is taken.
        self.cost = 0.0
        self.stop = threading.Event()

    def restore(self) -> str:
        """Loads the snapshot if there is one; a description of what was loaded, for the log."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if not os.path.exists(self.path):
            return f"no snapshot in {self.directory}: starting empty"
        started = time.perf_counter()
        with open(self.path, "rb") as file:
            if file.readline() != SNAPSHOT_MAGIC:
                sys.exit(f"emulator: {self.path} is not an emulator snapshot; move it away or start fresh")
            header = json.loads(file.readline())
            want = snapshot_header()
            if {k: header.get(k) for k in ("moto", "python")} != {k: want[k] for k in ("moto", "python")}:
                # Pickles are only safe to read back with the code that wrote them.
                sys.exit(
                    f"emulator: {self.path} was written by moto {header.get('moto')} on Python "
                    f"{header.get('python')}, this is moto {want['moto']} on Python {want['python']}: "
                    "start fresh (scripts/dev --fresh keeps the old state aside) or reinstall that moto"
                )
            services = StateUnpickler(file).load()
        for name, accounts in services.items():
            backend = get_backend(name)
            backend.clear()
            backend.update(accounts)
            # moto resets only the BackendDicts it has seen an account created in.
            if accounts:
                backend._create_account_specific_backend(next(iter(accounts)))
        took = (time.perf_counter() - started) * 1000
        return f"restored {self.path} ({os.path.getsize(self.path)} bytes, written {header.get('written_at')}) in {took:.0f} ms"

    def save(self) -> None:
        """Takes a snapshot if a write was answered since the file on disk was written."""
        with self.writing:
            if self.app.writes == self.saved:
                return
            started = time.perf_counter()
            with self.app.lock:
                writes = self.app.writes
                buffer = io.BytesIO()
                StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(
                    {name: dict(get_backend(name)) for name in PERSISTED_SERVICES}
                )
            pickled = time.perf_counter()
            self.cost = pickled - started
            header = dict(snapshot_header(), written_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            temporary = f"{self.path}.tmp-{os.getpid()}"
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(SNAPSHOT_MAGIC)
                file.write(json.dumps(header).encode() + b"\n")
                file.write(buffer.getbuffer())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            # The rename itself is durable only once the directory is.
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self.saved = writes
            done = time.perf_counter()
            if os.environ.get("KAVACH_EMULATOR_TIMINGS"):
                print(
                    f"emulator: snapshot of {buffer.getbuffer().nbytes} bytes: {1000 * (pickled - started):.1f} ms "
                    f"under the lock, {1000 * (done - started):.1f} ms in all",
                    file=sys.stderr,
                    flush=True,
                )

    def delay(self) -> float:
        """The interval, or longer once the state is so large that snapshots every interval would
        hold the request lock more than a fifth of the time (several thousand sandbox orders)."""
        return max(self.interval, 4 * self.cost)

    def run(self) -> None:
        stretched = False
        while not self.stop.wait(self.delay()):
            try:
                self.save()
            except Exception as error:  # noqa: BLE001 - keep serving; the next tick tries again
                print(f"emulator: snapshot to {self.path} failed: {error!r}", file=sys.stderr, flush=True)
            if self.delay() > self.interval and not stretched:
                stretched = True
                print(
                    f"emulator: a snapshot now takes {1000 * self.cost:.0f} ms, so one is taken every "
                    f"{self.delay():.1f} s rather than {self.interval:g} s: a kill -9 may lose that much",
                    file=sys.stderr,
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    parser.add_argument("--state", metavar="DIR", help="keep state in DIR across restarts (default: in memory only)")
    parser.add_argument(
        "--snapshot-interval",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="with --state: the most seconds a write waits before it is on disk (default 1)",
    )
    parser.add_argument(
        "--close-connections",
        action="store_true",
        help="close every connection after one response, as werkzeug does (for scripts/bench's comparison)",
    )
    args = parser.parse_args()
    if args.snapshot_interval <= 0:
        parser.error("--snapshot-interval must be more than 0")
    # SIGINT (Ctrl-C reaches the whole process group of scripts/dev) and SIGTERM (its cleanup) both
    # stop serving, once: the second of them, which usually follows, must not cut the final
    # snapshot short. (A shell also starts background jobs with SIGINT ignored; this undoes that.)
    stopping = threading.Event()

    def stop(*_):
        if not stopping.is_set():
            stopping.set()
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if moto.__version__ != MIRRORED_MOTO:
        sys.exit(
            f"emulator: TransactWriteItems is mirrored from moto {MIRRORED_MOTO}, this is moto {moto.__version__}: "
            "check transact_write_items in scripts/emulator.py against it, then update MIRRORED_MOTO"
        )
    DynamoDBBackend.transact_write_items = transact_write_items
    Table.all_items = partition_items(Table.all_items)
    Table.query = partition_query(Table.query)
    app = OneAtATime(DomainDispatcherApplication(create_backend_app))
    snapshots = None
    if args.state:
        snapshots = Snapshots(app, args.state, args.snapshot_interval)
        print(f"emulator: {snapshots.restore()}", file=sys.stderr, flush=True)
        threading.Thread(target=snapshots.run, name="snapshots", daemon=True).start()
    try:
        run_simple(
            args.host,
            args.port,
            app,
            threaded=True,
            request_handler=MotoRequestHandler if args.close_connections else KeepAliveRequestHandler,
        )
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        if snapshots is not None:
            snapshots.stop.set()
            snapshots.save()
            print(f"emulator: state saved to {snapshots.path}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
