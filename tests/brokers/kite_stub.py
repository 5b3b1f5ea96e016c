"""A local server that speaks Zerodha's Kite Connect v3 REST API, for tests.

Brokers' real servers are unreachable from the test machines, so Kavach's Kite adapter is tested
against this stub. It follows the public documentation (kite.trade/docs/connect/v3) and the
official Python client (`kiteconnect` on PyPI), not any adapter: `kite_fidelity.py` drives it with
that client and fails if the client cannot log in or parse an answer.

What it implements
- The login flow: `GET /connect/login?v=3&api_key=&redirect_params=` shows a consent page whose
  "Authorize" button redirects to the app's registered redirect URL with `action=login`,
  `type=login`, `status=success`, a single-use `request_token` and the `redirect_params` appended.
- `POST /session/token` (checksum = SHA-256(api_key + request_token + api_secret)) and
  `DELETE /session/token`. Access tokens expire at the next 06:00 IST, as Kite's do.
- Orders (place, modify, cancel, book, history, trades) with Kite's validation, including
  `market_protection` on MARKET and SL-M orders, and a deterministic fill model: MARKET fills at
  once at the stub's last price, LIMIT fills when marketable, SL/SL-M wait for their trigger.
- Positions, holdings, margins, profile, full/OHLC/LTP quotes with five-level depth, the
  instruments CSV (gzipped when the client accepts gzip) and historical candles.
- Postbacks: every COMPLETE/CANCELLED/REJECTED/UPDATE is POSTed as JSON to the app's postback URL
  with checksum = SHA-256(order_id + order_timestamp + api_secret).
- Kite's published rate limits (orders 10/s and 200/min, quote 1/s, historical 3/s, others 10/s),
  answering 429 `NetworkException` "Too many requests".
- Kite's error envelope `{"status":"error","message":…,"error_type":…}` with the HTTP statuses
  the client maps to its exception classes.

The control API (JSON, under `/__stub/`, on the same port) lets tests inject errors, latency and
rejections, expire sessions, move prices, refuse unregistered source IPs and count the calls the
stub received (with the source IP each came from). See `docs/architecture.md`, "Broker stubs".

Usage: kite_stub.py [--host 127.0.0.1] [--port 0] [--api-key K --api-secret S
       --redirect-url URL [--postback-url URL] [--user-id AB1234]]
Prints `KITE_STUB_PORT=<port>` on stdout once it accepts connections.
"""

import argparse
import fnmatch
import gzip
import hashlib
import hmac
import json
import math
import queue
import secrets
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IST = timezone(timedelta(hours=5, minutes=30))
TS = "%Y-%m-%d %H:%M:%S"

EXCHANGES = ["NSE", "BSE", "NFO", "CDS", "BFO", "MCX", "BCD"]
EQUITY_EXCHANGES = {"NSE", "BSE"}
VARIETIES = ["regular", "amo", "co", "iceberg", "auction"]
ORDER_TYPES = ["MARKET", "LIMIT", "SL", "SL-M"]
PRODUCTS = ["CNC", "NRML", "MIS", "MTF", "CO"]
VALIDITIES = ["DAY", "IOC", "TTL"]
INTERVALS = {  # interval -> (minutes per candle, the documented maximum days per request)
    "minute": (1, 60),
    "3minute": (3, 100),
    "5minute": (5, 100),
    "10minute": (10, 100),
    "15minute": (15, 200),
    "30minute": (30, 200),
    "60minute": (60, 400),
    "day": (None, 2000),
}
OPEN_STATES = {"OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED"}
MAX_MODIFICATIONS = 25  # Kite refuses the 26th modification of an order

# Kite's own messages where they are documented or quoted by Zerodha staff on the forum.
MSG_BAD_TOKEN = "Incorrect `api_key` or `access_token`."
MSG_BAD_REQUEST_TOKEN = "Token is invalid or has expired."
MSG_BAD_CHECKSUM = "Invalid `checksum`."
MSG_NO_MARKET_PROTECTION = (
    "Market orders without market protection are not allowed via API. "
    "Please set market protection or use a Limit order."
)
MSG_RATE = "Too many requests"
# Kite has not published the body it returns for an order from an unregistered IP (enforced since
# 1 April 2026, order endpoints only). PermissionException/403 is the documented class for "call
# not allowed"; the message names the rule. A test can override all three with /__stub/inject.
MSG_IP_NOT_REGISTERED = (
    "Order requests are allowed only from the static IPs registered for this app. "
    "Request IP {ip} is not registered."
)

PRESETS = {
    "session_expired": (403, "TokenException", MSG_BAD_TOKEN),
    "input": (400, "InputException", "Invalid input"),
    "order": (500, "OrderException", "Order could not be placed"),
    "permission": (403, "PermissionException", "That API call is not allowed for the authenticated user"),
    "network": (503, "NetworkException", "Request failed (kitetrade-oms)"),
    "gateway_timeout": (504, "NetworkException", "Gateway timed out"),
    "oms_down": (502, "DataException", "Couldn't parse the response from the OMS"),
    "general": (500, "GeneralException", "Something went wrong"),
    "rate_limited": (429, "NetworkException", MSG_RATE),
    "ip_not_registered": (403, "PermissionException", None),
}

# The instrument master: (token, exchange_token, tradingsymbol, name, last_price, expiry, strike,
# tick_size, lot_size, instrument_type, segment, exchange).
INSTRUMENTS = [
    (408065, 1594, "INFY", "INFOSYS", 1500.0, "", 0.0, 0.05, 1, "EQ", "NSE", "NSE"),
    (779521, 3045, "SBIN", "STATE BANK OF INDIA", 800.0, "", 0.0, 0.05, 1, "EQ", "NSE", "NSE"),
    (738561, 2885, "RELIANCE", "RELIANCE INDUSTRIES", 1300.0, "", 0.0, 0.05, 1, "EQ", "NSE", "NSE"),
    (2953217, 11536, "TCS", "TATA CONSULTANCY SERV LT", 3500.0, "", 0.0, 0.05, 1, "EQ", "NSE", "NSE"),
    (256265, 26000, "NIFTY 50", "NIFTY 50", 24000.0, "", 0.0, 0.0, 0, "EQ", "INDICES", "NSE"),
    (128053508, 500209, "INFY", "INFOSYS", 1500.5, "", 0.0, 0.05, 1, "EQ", "BSE", "BSE"),
    (12683010, 49543, "NIFTY26DECFUT", "NIFTY", 24100.0, "2026-12-29", 0.0, 0.1, 75, "FUT", "NFO-FUT", "NFO"),
    (12690946, 49574, "NIFTY26DEC24000CE", "NIFTY", 210.0, "2026-12-29", 24000.0, 0.05, 75, "CE", "NFO-OPT", "NFO"),
    (113813255, 444583, "GOLDM26DECFUT", "GOLDM", 76000.0, "2026-12-04", 0.0, 1.0, 1, "FUT", "MCX-FUT", "MCX"),
]

SEED_HOLDINGS = [("NSE", "INFY", 10, 1350.0, "INE009A01021"), ("NSE", "SBIN", 5, 600.0, "INE062A01020")]


def kite_error(status, error_type, message):
    return status, {"status": "error", "message": message, "error_type": error_type}


class KiteError(Exception):
    def __init__(self, status, error_type, message):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def sha256_hex(*parts):
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


def round_tick(value, tick):
    return round(round(value / tick) * tick, 2) if tick else round(value, 2)


class App:
    def __init__(self, api_key, api_secret, redirect_url, postback_url=None, user_id="AB1234",
                 allowed_ips=None, app_id=None):
        self.api_key = api_key
        self.api_secret = api_secret
        self.redirect_url = redirect_url
        self.postback_url = postback_url
        self.user_id = user_id
        self.allowed_ips = allowed_ips  # None: any source IP may place orders
        self.app_id = app_id or (int(hashlib.sha256(api_key.encode()).hexdigest()[:6], 16) % 100000)


class Order:
    """One order: the view Kite returns and the history of its states."""

    def __init__(self, view, api_key):
        self.view = view
        self.api_key = api_key
        self.history = []
        self.modifications = 0

    def snapshot(self):
        self.history.append(dict(self.view))


class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.apps = {}
        self.request_tokens = {}  # token -> (api_key, user_id, issued_at)
        self.sessions = {}  # access_token -> dict
        self.orders = {}  # order_id -> Order
        self.trades = []
        self.instruments = {(i[11], i[2]): list(i) for i in INSTRUMENTS}
        self.by_token = {i[0]: (i[11], i[2]) for i in INSTRUMENTS}
        self.injections = []
        self.calls = []
        self.call_seq = 0
        self.postbacks = []
        self.postback_queue = queue.Queue()
        self.order_seq = 0
        self.trade_seq = 0
        self.clock_offset = 0.0
        self.request_token_ttl = 300.0
        self.rate_limits_enabled = True
        # Kite's published limits: (category, requests, window seconds).
        self.rate_limits = {"order": [(10, 1.0), (200, 60.0)], "quote": [(1, 1.0)],
                            "historical": [(3, 1.0)], "other": [(10, 1.0)]}
        self.rate_hits = {}
        self.postback_tamper = 0
        self.public_instruments = False

    def now(self):
        return datetime.now(IST) + timedelta(seconds=self.clock_offset)

    def ts(self):
        return self.now().strftime(TS)

    def instrument(self, exchange, symbol):
        return self.instruments.get((exchange, symbol))


STATE = State()


def next_boundary(moment):
    """The next 06:00 IST after `moment`: Kite's daily session expiry."""
    boundary = moment.replace(hour=6, minute=0, second=0, microsecond=0)
    return boundary if moment < boundary else boundary + timedelta(days=1)


# ---------------------------------------------------------------------------------------------
# Orders and the fill model


def new_order_id():
    STATE.order_seq += 1
    return STATE.now().strftime("%y%m%d") + f"{STATE.order_seq:09d}"


def marketable(order, ltp):
    if order["order_type"] == "MARKET":
        return True
    if order["order_type"] == "LIMIT":
        return ltp <= order["price"] if order["transaction_type"] == "BUY" else ltp >= order["price"]
    return False


def triggered(order, ltp):
    if order["transaction_type"] == "BUY":
        return ltp >= order["trigger_price"]
    return ltp <= order["trigger_price"]


def fill(order_obj, quantity, price):
    """Fill `quantity` of an order at `price`; records the trade and the new state."""
    o = order_obj.view
    now = STATE.ts()
    STATE.trade_seq += 1
    STATE.trades.append({
        "trade_id": f"{10000000 + STATE.trade_seq}",
        "order_id": o["order_id"],
        "exchange": o["exchange"],
        "tradingsymbol": o["tradingsymbol"],
        "instrument_token": o["instrument_token"],
        "product": o["product"],
        "average_price": price,
        "quantity": quantity,
        "exchange_order_id": o["exchange_order_id"],
        "transaction_type": o["transaction_type"],
        "fill_timestamp": now,
        "order_timestamp": o["order_timestamp"],
        "exchange_timestamp": now,
        "_api_key": order_obj.api_key,
        "_user_id": o["placed_by"],
    })
    filled_before = o["filled_quantity"]
    o["filled_quantity"] = filled_before + quantity
    o["average_price"] = round(
        (o["average_price"] * filled_before + price * quantity) / o["filled_quantity"], 2)
    o["pending_quantity"] = o["quantity"] - o["filled_quantity"]
    o["exchange_update_timestamp"] = now
    if o["pending_quantity"] == 0:
        o["status"] = "COMPLETE"
        order_obj.snapshot()
        queue_postback(order_obj, "COMPLETE")
    else:
        order_obj.snapshot()
        queue_postback(order_obj, "UPDATE")


def evaluate(order_obj):
    """Move an open order on if the stub's last price allows: trigger, then fill."""
    o = order_obj.view
    if o["status"] not in ("OPEN", "TRIGGER PENDING"):
        return
    inst = STATE.instrument(o["exchange"], o["tradingsymbol"])
    ltp = inst[4]
    if o["status"] == "TRIGGER PENDING":
        if not triggered(o, ltp):
            return
        o["status"] = "OPEN"
        order_obj.snapshot()
        if o["order_type"] == "SL-M":
            fill(order_obj, o["pending_quantity"], ltp)
            return
    effective = dict(o, order_type="LIMIT") if o["order_type"] == "SL" else o
    if marketable(effective, ltp):
        fill(order_obj, o["pending_quantity"], ltp)
    elif o["validity"] == "IOC":
        o["status"] = "CANCELLED"
        o["cancelled_quantity"] = o["pending_quantity"]
        o["pending_quantity"] = 0
        order_obj.snapshot()
        queue_postback(order_obj, "CANCELLED")


def parse_number(params, name, kind=float, required=False):
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise KiteError(400, "InputException", f"Missing `{name}`.")
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise KiteError(400, "InputException", f"Invalid `{name}`.") from None
    if kind is float and not math.isfinite(value):
        raise KiteError(400, "InputException", f"Invalid `{name}`.")
    return value


def check_price_rules(order_type, transaction_type, price, trigger_price, tick, market_protection,
                      require_protection=True):
    if order_type in ("LIMIT", "SL"):
        if price is None or price <= 0:
            raise KiteError(400, "InputException", "Invalid `price`. Price should be greater than 0.")
        if tick and abs(round(price / tick) * tick - price) > 1e-6:
            raise KiteError(400, "InputException", f"Tick size for this script is {tick:.2f}. "
                            "Kindly enter price in the multiple of tick size for this script")
    elif price:
        raise KiteError(400, "InputException", "Price is not allowed for MARKET and SL-M orders.")
    if order_type in ("SL", "SL-M"):
        if trigger_price is None or trigger_price <= 0:
            raise KiteError(400, "InputException", "Invalid `trigger_price`.")
        if order_type == "SL" and transaction_type == "BUY" and trigger_price > price:
            raise KiteError(400, "InputException",
                            "Trigger price for stoploss buy orders should be lower than the price.")
        if order_type == "SL" and transaction_type == "SELL" and trigger_price < price:
            raise KiteError(400, "InputException",
                            "Trigger price for stoploss sell orders should be higher than the price.")
    elif trigger_price:
        raise KiteError(400, "InputException", "Trigger price is allowed only for SL and SL-M orders.")
    if order_type in ("MARKET", "SL-M") and require_protection:
        if market_protection is None or market_protection == 0:
            raise KiteError(400, "InputException", MSG_NO_MARKET_PROTECTION)
    if market_protection is not None and not (market_protection == -1 or 0 < market_protection <= 100):
        raise KiteError(400, "InputException",
                        "Invalid `market_protection`. Use -1 for automatic protection or a value above 0 up to 100.")


def place_order(app, session, variety, params):
    def choice(name, allowed):
        value = params.get(name)
        if not value:
            raise KiteError(400, "InputException", f"Missing `{name}`.")
        if value not in allowed:
            raise KiteError(400, "InputException", f"Invalid `{name}`.")
        return value

    exchange = choice("exchange", EXCHANGES)
    symbol = params.get("tradingsymbol")
    if not symbol:
        raise KiteError(400, "InputException", "Missing `tradingsymbol`.")
    inst = STATE.instrument(exchange, symbol)
    if inst is None or inst[10] == "INDICES":
        raise KiteError(400, "InputException", "Invalid `tradingsymbol`.")
    transaction_type = choice("transaction_type", ["BUY", "SELL"])
    order_type = choice("order_type", ORDER_TYPES)
    product = choice("product", PRODUCTS)
    if product == "CNC" and exchange not in EQUITY_EXCHANGES:
        raise KiteError(400, "InputException", "CNC product is allowed only for equity (NSE, BSE).")
    if product in ("NRML",) and exchange in EQUITY_EXCHANGES:
        raise KiteError(400, "InputException", "NRML product is allowed only for derivatives.")
    quantity = parse_number(params, "quantity", int, required=True)
    if quantity <= 0:
        raise KiteError(400, "InputException", "Invalid `quantity`. Quantity should be greater than 0.")
    if inst[8] > 1 and quantity % inst[8]:
        raise KiteError(400, "InputException", f"Quantity should be a multiple of lot size {inst[8]}.")
    price = parse_number(params, "price")
    trigger_price = parse_number(params, "trigger_price")
    market_protection = parse_number(params, "market_protection")
    check_price_rules(order_type, transaction_type, price, trigger_price, inst[7], market_protection)
    validity = params.get("validity") or "DAY"
    if validity not in VALIDITIES:
        raise KiteError(400, "InputException", "Invalid `validity`.")
    validity_ttl = parse_number(params, "validity_ttl", int)
    if validity == "TTL" and not validity_ttl:
        raise KiteError(400, "InputException", "Missing `validity_ttl`.")
    disclosed = parse_number(params, "disclosed_quantity", int) or 0
    if disclosed < 0 or disclosed > quantity:
        raise KiteError(400, "InputException", "Invalid `disclosed_quantity`.")
    tag = params.get("tag")
    if tag is not None and len(tag) > 20:
        raise KiteError(400, "InputException", "Invalid `tag`. Tag can be at most 20 characters.")
    meta = {}
    if variety == "iceberg":
        legs = parse_number(params, "iceberg_legs", int, required=True)
        leg_qty = parse_number(params, "iceberg_quantity", int, required=True)
        if not 2 <= legs <= 50 or leg_qty <= 0:
            raise KiteError(400, "InputException", "Invalid `iceberg_legs`.")
        meta = {"iceberg": {"leg": 1, "legs": legs, "leg_quantity": leg_qty,
                            "total_quantity": quantity, "remaining_quantity": quantity - leg_qty}}
    if variety == "auction" and not params.get("auction_number"):
        raise KiteError(400, "InputException", "Missing `auction_number`.")
    if params.get("autoslice") == "true":
        # Autoslice answers with a parent order and children split at the exchange's freeze
        # quantity; the stub does not model freeze quantities, so it refuses rather than answer
        # with a shape Kite would not send.
        raise KiteError(400, "InputException", "autoslice is not implemented by the Kite stub.")
    if variety == "co" and trigger_price is None:
        raise KiteError(400, "InputException", "Missing `trigger_price`.")

    now = STATE.ts()
    order_id = new_order_id()
    view = {
        "placed_by": session["user_id"],
        "order_id": order_id,
        "exchange_order_id": None,
        "parent_order_id": None,
        "status": "PUT ORDER REQ RECEIVED",
        "status_message": None,
        "status_message_raw": None,
        "order_timestamp": now,
        "exchange_update_timestamp": None,
        "exchange_timestamp": None,
        "variety": variety,
        "modified": False,
        "exchange": exchange,
        "tradingsymbol": symbol,
        "instrument_token": inst[0],
        "order_type": order_type,
        "transaction_type": transaction_type,
        "validity": validity,
        "validity_ttl": validity_ttl or 0,
        "product": product,
        "quantity": quantity,
        "disclosed_quantity": disclosed,
        "price": price or 0,
        "trigger_price": trigger_price or 0,
        "average_price": 0,
        "filled_quantity": 0,
        "pending_quantity": quantity,
        "cancelled_quantity": 0,
        "market_protection": int(market_protection) if market_protection is not None else 0,
        "meta": meta,
        "tag": tag,
        "guid": secrets.token_hex(8),
    }
    if tag:
        view["tags"] = [tag]
    if params.get("auction_number"):
        view["auction_number"] = params["auction_number"]
    order_obj = Order(view, app.api_key)
    STATE.orders[order_id] = order_obj
    order_obj.snapshot()
    view["status"] = "VALIDATION PENDING"
    order_obj.snapshot()
    return order_obj


def settle_new_order(order_obj, reject_message=None):
    """The OMS side of a placed order: rejection, AMO queueing, or the exchange."""
    o = order_obj.view
    if reject_message:
        o["status"] = "REJECTED"
        o["status_message"] = reject_message
        o["status_message_raw"] = "RMS:" + reject_message
        o["pending_quantity"] = 0
        order_obj.snapshot()
        queue_postback(order_obj, "REJECTED")
        return
    if o["variety"] == "amo":
        o["status"] = "AMO REQ RECEIVED"
        order_obj.snapshot()
        return
    o["status"] = "OPEN PENDING"
    order_obj.snapshot()
    o["exchange_order_id"] = f"1{o['order_id'][-15:]:0>15}"
    o["exchange_timestamp"] = o["exchange_update_timestamp"] = STATE.ts()
    o["status"] = "TRIGGER PENDING" if o["order_type"] in ("SL", "SL-M") else "OPEN"
    order_obj.snapshot()
    evaluate(order_obj)


def modify_order(order_obj, params):
    o = order_obj.view
    if o["status"] not in OPEN_STATES:
        raise KiteError(400, "InputException",
                        f"Order cannot be modified as it is {o['status']}.")
    if order_obj.modifications >= MAX_MODIFICATIONS:
        raise KiteError(400, "InputException", "Maximum allowed order modifications exceeded.")
    order_obj.modifications += 1
    order_type = params.get("order_type") or o["order_type"]
    if order_type not in ORDER_TYPES:
        raise KiteError(400, "InputException", "Invalid `order_type`.")
    quantity = parse_number(params, "quantity", int)
    quantity = o["quantity"] if quantity is None else quantity
    if quantity <= 0 or quantity < o["filled_quantity"]:
        raise KiteError(400, "InputException", "Invalid `quantity`.")
    price = parse_number(params, "price")
    if order_type in ("MARKET", "SL-M"):
        price = None
    elif price is None:
        price = o["price"]
    trigger_price = parse_number(params, "trigger_price")
    if order_type in ("SL", "SL-M"):
        trigger_price = o["trigger_price"] if trigger_price is None else trigger_price
    else:
        trigger_price = None
    market_protection = parse_number(params, "market_protection")
    # An order that is already MARKET/SL-M keeps its protection; a LIMIT turned MARKET needs one.
    already_protected = o["order_type"] in ("MARKET", "SL-M") and o["market_protection"] != 0
    inst = STATE.instrument(o["exchange"], o["tradingsymbol"])
    check_price_rules(order_type, o["transaction_type"], price, trigger_price, inst[7],
                      market_protection, require_protection=not already_protected)
    validity = params.get("validity") or o["validity"]
    if validity not in VALIDITIES:
        raise KiteError(400, "InputException", "Invalid `validity`.")
    disclosed = parse_number(params, "disclosed_quantity", int)
    o["status"] = "MODIFY VALIDATION PENDING"
    order_obj.snapshot()
    o["status"] = "MODIFY PENDING"
    order_obj.snapshot()
    o.update({
        "order_type": order_type, "quantity": quantity, "price": price or 0,
        "trigger_price": trigger_price or 0, "validity": validity, "modified": True,
        "pending_quantity": quantity - o["filled_quantity"],
        "order_timestamp": STATE.ts(), "exchange_update_timestamp": STATE.ts(),
    })
    if market_protection is not None:
        o["market_protection"] = int(market_protection)
    if disclosed is not None:
        o["disclosed_quantity"] = disclosed
    o["status"] = "MODIFIED"
    order_obj.snapshot()
    if o["variety"] == "amo":
        o["status"] = "AMO REQ RECEIVED"
    else:
        o["status"] = "TRIGGER PENDING" if order_type in ("SL", "SL-M") else "OPEN"
    order_obj.snapshot()
    queue_postback(order_obj, "UPDATE")
    evaluate(order_obj)


def cancel_order(order_obj):
    o = order_obj.view
    if o["status"] not in OPEN_STATES:
        raise KiteError(400, "InputException",
                        f"Order cannot be cancelled as it is {o['status']}.")
    o["status"] = "CANCEL PENDING"
    order_obj.snapshot()
    o["cancelled_quantity"] = o["pending_quantity"]
    o["pending_quantity"] = 0
    o["status"] = "CANCELLED"
    o["exchange_update_timestamp"] = STATE.ts()
    order_obj.snapshot()
    queue_postback(order_obj, "CANCELLED")


# ---------------------------------------------------------------------------------------------
# Postbacks


def queue_postback(order_obj, status):
    app = STATE.apps.get(order_obj.api_key)
    if app is None or not app.postback_url:
        return
    payload = dict(order_obj.view)
    payload["status"] = status
    payload.update({"user_id": payload["placed_by"], "unfilled_quantity": payload["pending_quantity"],
                    "app_id": app.app_id})
    checksum = sha256_hex(payload["order_id"], payload["order_timestamp"], app.api_secret)
    if STATE.postback_tamper > 0:
        STATE.postback_tamper -= 1
        checksum = sha256_hex(payload["order_id"], payload["order_timestamp"], "not-the-secret")
    payload["checksum"] = checksum
    STATE.postback_queue.put((app.postback_url, payload))


def postback_worker():
    # One worker, so postbacks for an order arrive in the order its states changed.
    while True:
        url, payload = STATE.postback_queue.get()
        body = json.dumps(payload).encode()
        record = {"url": url, "order_id": payload["order_id"], "status": payload["status"],
                  "checksum": payload["checksum"], "payload": payload}
        try:
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=3) as resp:
                record["response_status"] = resp.status
        except Exception as e:  # recorded for the tests; Kite does not retry either
            record["response_status"] = getattr(e, "code", None)
            record["error"] = str(e)
        with STATE.lock:
            STATE.postbacks.append(record)


# ---------------------------------------------------------------------------------------------
# Market data


def quote_full(inst):
    token, _, _, _, ltp, _, _, tick, _, itype, segment, _ = inst
    tick = tick or 0.05
    close = round_tick(ltp * 0.99, tick)
    depth_buy = [{"price": round_tick(ltp - (i + 1) * tick, tick), "quantity": 100 * (i + 1), "orders": i + 1}
                 for i in range(5)]
    depth_sell = [{"price": round_tick(ltp + (i + 1) * tick, tick), "quantity": 100 * (i + 1), "orders": i + 1}
                  for i in range(5)]
    derivative = itype in ("FUT", "CE", "PE")
    now = STATE.ts()
    return {
        "instrument_token": token,
        "timestamp": now,
        "last_trade_time": now,
        "last_price": ltp,
        "last_quantity": 5,
        "buy_quantity": 1500,
        "sell_quantity": 1500,
        "volume": 1000000,
        "average_price": round_tick(ltp * 0.998, tick),
        "oi": 120000 if derivative else 0,
        "oi_day_high": 130000 if derivative else 0,
        "oi_day_low": 110000 if derivative else 0,
        "net_change": round(ltp - close, 2),
        "lower_circuit_limit": round_tick(close * 0.8, tick),
        "upper_circuit_limit": round_tick(close * 1.2, tick),
        "ohlc": ohlc_of(inst),
        "depth": {"buy": depth_buy, "sell": depth_sell},
    }


def ohlc_of(inst):
    ltp, tick = inst[4], inst[7] or 0.05
    return {"open": round_tick(ltp * 0.995, tick), "high": round_tick(ltp * 1.01, tick),
            "low": round_tick(ltp * 0.985, tick), "close": round_tick(ltp * 0.99, tick)}


def resolve_instruments(values, limit):
    if not values:
        raise KiteError(400, "InputException", "No instruments provided. Pass one or more `i`.")
    if len(values) > limit:
        raise KiteError(400, "InputException", f"Too many instruments. At most {limit} are allowed.")
    found = {}
    for key in values:
        if ":" in key:
            exchange, symbol = key.split(":", 1)
            inst = STATE.instrument(exchange, symbol)
        else:
            ref = STATE.by_token.get(int(key)) if key.isdigit() else None
            inst = STATE.instrument(*ref) if ref else None
        if inst is not None:  # Kite leaves unknown instruments out of the answer
            found[key] = inst
    return found


def instruments_csv(exchange=None):
    lines = ["instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,"
             "lot_size,instrument_type,segment,exchange"]
    for i in INSTRUMENTS:
        if exchange and i[11] != exchange:
            continue
        inst = STATE.instruments[(i[11], i[2])]
        row = [str(inst[0]), str(inst[1]), inst[2], inst[3], f"{inst[4]}", inst[5], f"{inst[6]}",
               f"{inst[7]}", str(inst[8]), inst[9], inst[10], inst[11]]
        lines.append(",".join(f'"{v}"' if "," in v else v for v in row))
    return ("\n".join(lines) + "\n").encode()


def parse_when(raw, name):
    for fmt in (TS, "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).replace(tzinfo=IST)
        except (TypeError, ValueError):
            continue
    raise KiteError(400, "InputException", f"invalid {name} date")


def candles(token, interval, params):
    ref = STATE.by_token.get(token)
    if ref is None:
        raise KiteError(400, "InputException", "invalid token")
    if interval not in INTERVALS:
        raise KiteError(400, "InputException", "invalid interval")
    start = parse_when(params.get("from"), "from")
    end = parse_when(params.get("to"), "to")
    if start > end:
        raise KiteError(400, "InputException", "invalid from date: from date is after to date")
    step, max_days = INTERVALS[interval]
    if (end - start).days > max_days:
        raise KiteError(400, "InputException", f"interval exceeds max limit: {max_days} days")
    with_oi = params.get("oi") in ("1", "true")
    base = STATE.instrument(*ref)[4]
    out = []

    def candle(moment, n):
        drift = ((token * 31 + n * 17) % 41 - 20) / 1000.0  # deterministic, within +-2 %
        o = round(base * (1 + drift), 2)
        c = round(o * (1 + ((n * 7) % 9 - 4) / 1000.0), 2)
        row = [moment.strftime("%Y-%m-%dT%H:%M:%S+0530"), o, round(max(o, c) * 1.002, 2),
               round(min(o, c) * 0.998, 2), c, 1000 + (n * 37) % 5000]
        if with_oi:
            row.append(0)
        out.append(row)

    day = start.date()
    n = 0
    while day <= end.date():
        if day.weekday() < 5:
            if step is None:
                moment = datetime(day.year, day.month, day.day, tzinfo=IST)
                if start <= moment + timedelta(hours=23, minutes=59) and moment <= end:
                    candle(moment, n)
                    n += 1
            else:
                moment = datetime(day.year, day.month, day.day, 9, 15, tzinfo=IST)
                close = moment.replace(hour=15, minute=30)
                while moment < close:
                    if start <= moment <= end:
                        candle(moment, n)
                        n += 1
                    moment += timedelta(minutes=step)
        day += timedelta(days=1)
    return {"candles": out}


# ---------------------------------------------------------------------------------------------
# Portfolio and account


def user_trades(session):
    return [t for t in STATE.trades
            if t["_api_key"] == session["api_key"] and t["_user_id"] == session["user_id"]]


def public_trade(t):
    return {k: v for k, v in t.items() if not k.startswith("_")}


def positions(session):
    groups = {}
    for t in user_trades(session):
        key = (t["exchange"], t["tradingsymbol"], t["product"])
        g = groups.setdefault(key, {"bq": 0, "bv": 0.0, "sq": 0, "sv": 0.0, "token": t["instrument_token"]})
        if t["transaction_type"] == "BUY":
            g["bq"] += t["quantity"]
            g["bv"] += t["quantity"] * t["average_price"]
        else:
            g["sq"] += t["quantity"]
            g["sv"] += t["quantity"] * t["average_price"]
    rows = []
    for (exchange, symbol, product), g in groups.items():
        inst = STATE.instrument(exchange, symbol)
        ltp = inst[4]
        qty = g["bq"] - g["sq"]
        bp = round(g["bv"] / g["bq"], 2) if g["bq"] else 0
        sp = round(g["sv"] / g["sq"], 2) if g["sq"] else 0
        value = round(g["sv"] - g["bv"], 2)
        pnl = round(value + qty * ltp, 2)
        rows.append({
            "tradingsymbol": symbol, "exchange": exchange, "instrument_token": g["token"],
            "product": product, "quantity": qty, "overnight_quantity": 0, "multiplier": 1,
            "average_price": bp if qty > 0 else (sp if qty < 0 else 0),
            "close_price": ohlc_of(inst)["close"], "last_price": ltp, "value": value, "pnl": pnl,
            "m2m": pnl, "unrealised": pnl, "realised": 0,
            "buy_quantity": g["bq"], "buy_price": bp, "buy_value": round(g["bv"], 2), "buy_m2m": round(g["bv"], 2),
            "sell_quantity": g["sq"], "sell_price": sp, "sell_value": round(g["sv"], 2), "sell_m2m": round(g["sv"], 2),
            "day_buy_quantity": g["bq"], "day_buy_price": bp, "day_buy_value": round(g["bv"], 2),
            "day_sell_quantity": g["sq"], "day_sell_price": sp, "day_sell_value": round(g["sv"], 2),
        })
    return {"net": rows, "day": [dict(r) for r in rows]}


def holdings():
    rows = []
    for exchange, symbol, qty, avg, isin in SEED_HOLDINGS:
        inst = STATE.instrument(exchange, symbol)
        ltp, close = inst[4], ohlc_of(inst)["close"]
        rows.append({
            "tradingsymbol": symbol, "exchange": exchange, "instrument_token": inst[0], "isin": isin,
            "product": "CNC", "price": 0, "quantity": qty, "used_quantity": 0, "t1_quantity": 0,
            "realised_quantity": qty, "authorised_quantity": 0, "authorised_date": "2026-01-01 00:00:00",
            "opening_quantity": qty, "collateral_quantity": 0, "collateral_type": "",
            "discrepancy": False, "average_price": avg, "last_price": ltp, "close_price": close,
            "pnl": round((ltp - avg) * qty, 2), "day_change": round(ltp - close, 2),
            "day_change_percentage": round((ltp - close) / close * 100, 4),
        })
    return rows


def margin_segment(session, segment):
    debits = 0.0
    for t in user_trades(session):
        commodity = t["exchange"] == "MCX"
        if (segment == "commodity") == commodity and t["transaction_type"] == "BUY":
            debits += t["quantity"] * t["average_price"]
    cash = 500000.0 if segment == "equity" else 100000.0
    zero_used = {k: 0 for k in ("debits", "exposure", "m2m_realised", "m2m_unrealised", "option_premium",
                                "payout", "span", "holding_sales", "turnover", "liquid_collateral",
                                "stock_collateral", "delivery")}
    zero_used["debits"] = round(debits, 2)
    return {
        "enabled": True,
        "net": round(cash - debits, 2),
        "available": {"adhoc_margin": 0, "cash": cash, "opening_balance": cash,
                      "live_balance": round(cash - debits, 2), "collateral": 0, "intraday_payin": 0},
        "utilised": zero_used,
    }


def profile(session):
    return {
        "user_id": session["user_id"], "user_type": "individual", "email": "trader@example.com",
        "user_name": "Kite Stub Trader", "user_shortname": "Trader", "broker": "ZERODHA",
        "exchanges": ["NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX", "MF"],
        "products": ["CNC", "NRML", "MIS", "BO", "CO"], "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
        "avatar_url": None, "meta": {"demat_consent": "physical"},
    }


# ---------------------------------------------------------------------------------------------
# HTTP


def category(method, path):
    if path.startswith("/orders/") and method in ("POST", "PUT", "DELETE"):
        return "order"
    if path.startswith("/quote"):
        return "quote"
    if path.startswith("/instruments/historical/"):
        return "historical"
    return "other"


def rate_check(api_key, cat):
    if not STATE.rate_limits_enabled:
        return
    now = time.monotonic()
    hits = STATE.rate_hits.setdefault((api_key, cat), [])
    longest = max(w for _, w in STATE.rate_limits[cat])
    hits[:] = [h for h in hits if now - h < longest]
    for limit, window in STATE.rate_limits[cat]:
        if sum(1 for h in hits if now - h < window) >= limit:
            raise KiteError(429, "NetworkException", MSG_RATE)
    hits.append(now)


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kite Connect stub - Login</title></head>
<body>
<h1>Kite by Zerodha (stub)</h1>
<p>The app <strong>{app}</strong> wants to access your Kite account.</p>
<form method="post" action="/connect/login" id="kite-login">
<input type="hidden" name="api_key" value="{api_key}">
<input type="hidden" name="redirect_params" value="{redirect_params}">
<label>User ID <input name="user_id" id="userid" value="{user_id}"></label>
<button type="submit" name="action" value="authorize" id="authorize">Authorize</button>
<button type="submit" name="action" value="cancel" id="cancel">Cancel</button>
</form>
</body></html>
"""


def html_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#x27;"))


class Handler(BaseHTTPRequestHandler):
    server_version = "KiteStub/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the call log is the record
        pass

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    # -- plumbing -------------------------------------------------------------------------------

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status, body, content_type="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        # Recorded before the answer goes out: a caller that reads /__stub/calls as soon as it has
        # its answer must find the call's status there.
        if getattr(self, "call_record", None) is not None:
            self.call_record["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.response_status = status

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        raw = self.read_body()
        self.response_status = None
        record = None
        if not path.startswith("/__stub/"):
            with STATE.lock:
                STATE.call_seq += 1
                record = {"seq": STATE.call_seq, "time": time.time(), "method": method, "path": path,
                          "query": url.query, "client_ip": self.client_address[0],
                          "x_forwarded_for": self.headers.get("X-Forwarded-For"),
                          "kite_version": self.headers.get("X-Kite-Version"),
                          "api_key": None, "status": None}
                STATE.calls.append(record)
        self.call_record = record
        try:
            if path.startswith("/__stub/"):
                self.control(method, path, query, raw)
            else:
                self.kite(method, path, query, raw, record)
        except KiteError as e:
            self.send(*kite_error(e.status, e.error_type, e.message))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller gave up (a client timeout against injected latency)
        if record is not None:
            record["status"] = self.response_status

    # -- injections -----------------------------------------------------------------------------

    def take_injection(self, method, path):
        with STATE.lock:
            for inj in STATE.injections:
                if inj["method"] not in ("*", method) or not fnmatch.fnmatchcase(path, inj["path"]):
                    continue
                if inj["times"] > 0:
                    inj["times"] -= 1
                    if inj["times"] == 0:
                        STATE.injections.remove(inj)
                return dict(inj)
        return None

    # -- Kite routes ----------------------------------------------------------------------------

    def kite(self, method, path, query, raw, record):
        if path == "/connect/login":
            return self.login(method, query, raw)
        parts = [p for p in path.split("/") if p]
        if STATE.public_instruments and method == "GET" and parts[:1] == ["instruments"] and len(parts) <= 2:
            # Kite documents the dump with the session headers, and that is the default here; the
            # dump is also reported to be served without them, which this switch reproduces.
            with STATE.lock:
                rate_check("ip:" + self.client_address[0], "other")
                if len(parts) == 2 and parts[1] not in EXCHANGES:
                    raise KiteError(400, "InputException", "Invalid `exchange`.")
                body = instruments_csv(parts[1] if len(parts) == 2 else None)
            self.send_csv(body)
            return
        if self.headers.get("X-Kite-Version") != "3":
            # Without the header Kite answers with its older API; this stub speaks v3 only, so an
            # adapter that forgets the header fails here rather than in production.
            raise KiteError(400, "InputException", "Missing or unsupported `X-Kite-Version` header (3 expected).")
        form = {}
        if raw and "application/json" not in (self.headers.get("Content-Type") or ""):
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode(), keep_blank_values=True).items()}
        params = {k: v[-1] for k, v in query.items()}
        params.update(form)
        inj = self.take_injection(method, path)
        if inj and inj.get("latency_ms") and inj.get("when", "before") == "before":
            time.sleep(inj["latency_ms"] / 1000.0)
        if inj and inj.get("error") and inj.get("when", "before") == "before":
            self.send(*self.injected_error(inj))
            return

        if path == "/session/token":
            record["api_key"] = params.get("api_key")
            status, body = self.session_token(method, params)
        else:
            with STATE.lock:
                session = self.authenticate()
                record["api_key"] = session["api_key"]
                rate_check(session["api_key"], category(method, path))
            status, body = self.route(method, path, query, params, session, inj)
        if inj and inj.get("latency_ms") and inj.get("when") == "after":
            time.sleep(inj["latency_ms"] / 1000.0)
        if inj and inj.get("error") and inj.get("when") == "after":
            # The call took effect but the caller hears an error: the outcome-unknown case.
            self.send(*self.injected_error(inj))
            return
        if isinstance(body, bytes):
            self.send_csv(body)
        else:
            self.send(status, body)

    def injected_error(self, inj):
        err = inj["error"]
        message = err["message"]
        if message is None:
            message = MSG_IP_NOT_REGISTERED.format(ip=self.client_address[0])
        return kite_error(err["status"], err["error_type"], message)

    def send_csv(self, body):
        headers = {}
        if "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self.send(200, body, content_type="text/csv", headers=headers)

    def authenticate(self):
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("token ") or ":" not in auth:
            raise KiteError(403, "TokenException", MSG_BAD_TOKEN)
        api_key, access_token = auth[len("token "):].split(":", 1)
        session = STATE.sessions.get(access_token)
        if session is None or session["api_key"] != api_key or session["revoked"]:
            raise KiteError(403, "TokenException", MSG_BAD_TOKEN)
        if STATE.now() >= session["expires_at"]:
            raise KiteError(403, "TokenException", MSG_BAD_TOKEN)
        return session

    def login(self, method, query, raw):
        if method == "GET":
            api_key = (query.get("api_key") or [""])[-1]
            app = STATE.apps.get(api_key)
            if app is None:
                self.send(400, "<!doctype html><p>Invalid <code>api_key</code>.</p>", "text/html; charset=utf-8")
                return
            redirect_params = (query.get("redirect_params") or [""])[-1]
            page = LOGIN_PAGE.format(app=html_escape(api_key), api_key=html_escape(api_key),
                                     redirect_params=html_escape(redirect_params),
                                     user_id=html_escape(app.user_id))
            self.send(200, page, "text/html; charset=utf-8")
            return
        if method != "POST":
            raise KiteError(405, "GeneralException", "Method not allowed")
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode(), keep_blank_values=True).items()}
        app = STATE.apps.get(form.get("api_key", ""))
        if app is None:
            self.send(400, "<!doctype html><p>Invalid <code>api_key</code>.</p>", "text/html; charset=utf-8")
            return
        if form.get("action") != "authorize":
            self.send(200, "<!doctype html><p>Login cancelled.</p>", "text/html; charset=utf-8")
            return
        token = secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")[:32]
        with STATE.lock:
            STATE.request_tokens[token] = (app.api_key, form.get("user_id") or app.user_id, time.monotonic())
        params = [("action", "login"), ("type", "login"), ("status", "success"), ("request_token", token)]
        query_string = urllib.parse.urlencode(params)
        extra = form.get("redirect_params") or ""
        if extra:
            query_string += "&" + extra
        sep = "&" if "?" in app.redirect_url else "?"
        self.send(302, b"", "text/html", headers={"Location": app.redirect_url + sep + query_string})

    def session_token(self, method, params):
        with STATE.lock:
            if method == "POST":
                for name in ("api_key", "request_token", "checksum"):
                    if not params.get(name):
                        raise KiteError(400, "InputException", f"Missing `{name}`.")
                app = STATE.apps.get(params["api_key"])
                if app is None:
                    raise KiteError(403, "TokenException", "Invalid `api_key`.")
                expected = sha256_hex(app.api_key, params["request_token"], app.api_secret)
                if not hmac.compare_digest(expected, params["checksum"]):
                    raise KiteError(403, "TokenException", MSG_BAD_CHECKSUM)
                entry = STATE.request_tokens.pop(params["request_token"], None)
                if entry is None or entry[0] != app.api_key or \
                        time.monotonic() - entry[2] > STATE.request_token_ttl:
                    raise KiteError(403, "TokenException", MSG_BAD_REQUEST_TOKEN)
                rate_check(app.api_key, "other")
                now = STATE.now()
                access_token = secrets.token_hex(16)
                session = {"api_key": app.api_key, "user_id": entry[1], "access_token": access_token,
                           "login_time": now.strftime(TS), "expires_at": next_boundary(now),
                           "revoked": False, "client_ip": self.client_address[0]}
                STATE.sessions[access_token] = session
                data = profile(session)
                data.update({"api_key": app.api_key, "access_token": access_token,
                             "public_token": secrets.token_hex(16), "enctoken": "", "refresh_token": "",
                             "silo": "", "login_time": session["login_time"]})
                return 200, {"status": "success", "data": data}
            if method == "DELETE":
                api_key, access_token = params.get("api_key"), params.get("access_token")
                if not api_key:
                    raise KiteError(400, "InputException", "Missing `api_key`.")
                if not access_token:
                    raise KiteError(400, "InputException", "Missing `access_token`.")
                session = STATE.sessions.get(access_token)
                if session is None or session["api_key"] != api_key or session["revoked"] or \
                        STATE.now() >= session["expires_at"]:
                    raise KiteError(403, "TokenException", MSG_BAD_TOKEN)
                session["revoked"] = True
                return 200, {"status": "success", "data": True}
        raise KiteError(405, "GeneralException", "Method not allowed")

    def route(self, method, path, query, params, session, inj):
        parts = [p for p in path.split("/") if p]
        ok = lambda data: (200, {"status": "success", "data": data})  # noqa: E731
        with STATE.lock:
            app = STATE.apps[session["api_key"]]
            if parts[0] == "orders" and method in ("POST", "PUT", "DELETE"):
                if len(parts) < 2 or parts[1] not in VARIETIES:
                    raise KiteError(400, "InputException", "Invalid `variety`.")
                if app.allowed_ips is not None and self.client_address[0] not in app.allowed_ips:
                    raise KiteError(403, "PermissionException",
                                    MSG_IP_NOT_REGISTERED.format(ip=self.client_address[0]))
                if method == "POST" and len(parts) == 2:
                    order_obj = place_order(app, session, parts[1], params)
                    settle_new_order(order_obj, (inj or {}).get("reject"))
                    return ok({"order_id": order_obj.view["order_id"]})
                if len(parts) == 3 and method in ("PUT", "DELETE"):
                    order_obj = self.own_order(session, parts[2])
                    if order_obj.view["variety"] != parts[1]:
                        raise KiteError(400, "InputException", "Invalid `variety`.")
                    (modify_order if method == "PUT" else lambda o, _p: cancel_order(o))(order_obj, params)
                    return ok({"order_id": order_obj.view["order_id"]})
            if method == "GET":
                if parts == ["orders"]:
                    return ok([dict(o.view) for o in self.user_orders(session)])
                if len(parts) == 2 and parts[0] == "orders":
                    return ok([dict(h) for h in self.own_order(session, parts[1]).history])
                if len(parts) == 3 and parts[0] == "orders" and parts[2] == "trades":
                    self.own_order(session, parts[1])
                    return ok([public_trade(t) for t in user_trades(session) if t["order_id"] == parts[1]])
                if parts == ["trades"]:
                    return ok([public_trade(t) for t in user_trades(session)])
                if parts == ["portfolio", "positions"]:
                    return ok(positions(session))
                if parts == ["portfolio", "holdings"]:
                    return ok(holdings())
                if parts == ["user", "profile"]:
                    return ok(profile(session))
                if parts == ["user", "margins"]:
                    return ok({s: margin_segment(session, s) for s in ("equity", "commodity")})
                if len(parts) == 3 and parts[:2] == ["user", "margins"]:
                    if parts[2] not in ("equity", "commodity"):
                        raise KiteError(400, "InputException", "Invalid segment.")
                    return ok(margin_segment(session, parts[2]))
                if parts[0] == "quote":
                    keys = query.get("i", [])
                    if parts == ["quote"]:
                        found = resolve_instruments(keys, 500)
                        return ok({k: quote_full(v) for k, v in found.items()})
                    if parts == ["quote", "ohlc"]:
                        found = resolve_instruments(keys, 1000)
                        return ok({k: {"instrument_token": v[0], "last_price": v[4], "ohlc": ohlc_of(v)}
                                   for k, v in found.items()})
                    if parts == ["quote", "ltp"]:
                        found = resolve_instruments(keys, 1000)
                        return ok({k: {"instrument_token": v[0], "last_price": v[4]} for k, v in found.items()})
                if parts == ["instruments"]:
                    return 200, instruments_csv()
                if len(parts) == 2 and parts[0] == "instruments":
                    if parts[1] not in EXCHANGES:
                        raise KiteError(400, "InputException", "Invalid `exchange`.")
                    return 200, instruments_csv(parts[1])
                if len(parts) == 4 and parts[:2] == ["instruments", "historical"]:
                    if not parts[2].isdigit():
                        raise KiteError(400, "InputException", "invalid token")
                    return ok(candles(int(parts[2]), parts[3], params))
        raise KiteError(404, "GeneralException", "Route not found")

    def user_orders(self, session):
        return [o for o in STATE.orders.values()
                if o.api_key == session["api_key"] and o.view["placed_by"] == session["user_id"]]

    def own_order(self, session, order_id):
        order_obj = STATE.orders.get(order_id)
        if order_obj is None or order_obj.api_key != session["api_key"] or \
                order_obj.view["placed_by"] != session["user_id"]:
            raise KiteError(400, "InputException", "Couldn't find that `order_id`.")
        return order_obj

    # -- control API ----------------------------------------------------------------------------

    def control(self, method, path, query, raw):
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self.send(400, {"error": "control bodies are JSON"})
            return
        name = path[len("/__stub/"):]
        try:
            with STATE.lock:
                result = self.control_action(method, name, query, body)
        except (KeyError, TypeError, ValueError) as e:
            self.send(400, {"error": f"bad control request: {e}"})
            return
        if result is None:
            self.send(404, {"error": f"no control route {method} {path}"})
        else:
            self.send(200, result)

    def control_action(self, method, name, query, body):
        if name == "health" and method == "GET":
            return {"status": "ok"}
        if name == "whoami" and method == "GET":
            # The source address this stub sees: what a broker sees as the caller's egress IP.
            return {"ip": self.client_address[0]}
        if name == "apps" and method == "POST":
            app = App(body["api_key"], body["api_secret"], body["redirect_url"], body.get("postback_url"),
                      body.get("user_id", "AB1234"), body.get("allowed_ips"), body.get("app_id"))
            STATE.apps[app.api_key] = app
            return {"api_key": app.api_key, "app_id": app.app_id}
        if name == "apps" and method == "GET":
            return [{"api_key": a.api_key, "redirect_url": a.redirect_url, "postback_url": a.postback_url,
                     "user_id": a.user_id, "allowed_ips": a.allowed_ips, "app_id": a.app_id}
                    for a in STATE.apps.values()]
        if name == "inject" and method == "POST":
            inj = {"method": body.get("method", "*").upper(), "path": body.get("path", "*"),
                   "times": int(body.get("times", 1)), "latency_ms": body.get("latency_ms"),
                   "when": body.get("when", "before"), "reject": body.get("reject"), "error": None}
            if inj["when"] not in ("before", "after"):
                raise ValueError("when is before or after")
            if "preset" in body:
                status, error_type, message = PRESETS[body["preset"]]
                inj["error"] = {"status": status, "error_type": error_type, "message": message}
            if "error" in body:
                err = body["error"]
                inj["error"] = {"status": int(err["status"]), "error_type": err["error_type"],
                                "message": err.get("message", "Injected error")}
            STATE.injections.append(inj)
            return {"injections": len(STATE.injections)}
        if name == "inject" and method == "DELETE":
            STATE.injections.clear()
            return {"injections": 0}
        if name == "expire_sessions" and method == "POST":
            n = 0
            for s in STATE.sessions.values():
                if body.get("api_key") not in (None, s["api_key"]) or body.get("user_id") not in (None, s["user_id"]):
                    continue
                if STATE.now() < s["expires_at"]:
                    s["expires_at"] = STATE.now()
                    n += 1
            return {"expired": n}
        if name == "sessions" and method == "GET":
            return [{"api_key": s["api_key"], "user_id": s["user_id"], "login_time": s["login_time"],
                     "expires_at": s["expires_at"].strftime(TS), "revoked": s["revoked"],
                     "active": not s["revoked"] and STATE.now() < s["expires_at"]}
                    for s in STATE.sessions.values()]
        if name == "clock" and method == "POST":
            if "offset_seconds" in body:
                STATE.clock_offset = float(body["offset_seconds"])
            if "advance_seconds" in body:
                STATE.clock_offset += float(body["advance_seconds"])
            return {"now": STATE.ts(), "offset_seconds": STATE.clock_offset}
        if name == "price" and method == "POST":
            exchange, symbol = body["instrument"].split(":", 1)
            inst = STATE.instrument(exchange, symbol)
            if inst is None:
                raise KeyError(body["instrument"])
            inst[4] = float(body["last_price"])
            for order_obj in list(STATE.orders.values()):
                if order_obj.view["exchange"] == exchange and order_obj.view["tradingsymbol"] == symbol:
                    evaluate(order_obj)
            return {"instrument": body["instrument"], "last_price": inst[4]}
        if name == "fill" and method == "POST":
            order_obj = STATE.orders[body["order_id"]]
            o = order_obj.view
            if o["status"] != "OPEN":
                raise ValueError(f"order is {o['status']}, not OPEN")
            qty = int(body.get("quantity", o["pending_quantity"]))
            if not 0 < qty <= o["pending_quantity"]:
                raise ValueError("quantity must be within the pending quantity")
            price = float(body.get("price", STATE.instrument(o["exchange"], o["tradingsymbol"])[4]))
            fill(order_obj, qty, price)
            return dict(o)
        if name == "config" and method == "POST":
            if "rate_limits_enabled" in body:
                STATE.rate_limits_enabled = bool(body["rate_limits_enabled"])
            if body.get("reset_rate_limits"):
                STATE.rate_hits.clear()
            if "request_token_ttl_seconds" in body:
                STATE.request_token_ttl = float(body["request_token_ttl_seconds"])
            if "postback_tamper" in body:
                STATE.postback_tamper = int(body["postback_tamper"])
            if "public_instruments" in body:
                STATE.public_instruments = bool(body["public_instruments"])
            return {"rate_limits_enabled": STATE.rate_limits_enabled,
                    "request_token_ttl_seconds": STATE.request_token_ttl,
                    "postback_tamper": STATE.postback_tamper, "public_instruments": STATE.public_instruments}
        if name == "calls" and method == "GET":
            since = int((query.get("since") or ["0"])[-1])
            path_glob = (query.get("path") or ["*"])[-1]
            return [c for c in STATE.calls if c["seq"] > since and fnmatch.fnmatchcase(c["path"], path_glob)]
        if name == "calls" and method == "DELETE":
            STATE.calls.clear()
            return {"calls": 0}
        if name == "postbacks" and method == "GET":
            return list(STATE.postbacks)
        if name == "orders" and method == "GET":
            return [{"api_key": o.api_key, **o.view} for o in STATE.orders.values()]
        if name == "reset" and method == "POST":
            STATE.request_tokens.clear()
            STATE.sessions.clear()
            STATE.orders.clear()
            STATE.trades.clear()
            STATE.injections.clear()
            STATE.calls.clear()
            STATE.postbacks.clear()
            STATE.rate_hits.clear()
            STATE.clock_offset = 0.0
            STATE.postback_tamper = 0
            STATE.instruments = {(i[11], i[2]): list(i) for i in INSTRUMENTS}
            return {"reset": True}
        return None


def main():
    parser = argparse.ArgumentParser(description="Kite Connect v3 stub")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key")
    parser.add_argument("--api-secret")
    parser.add_argument("--redirect-url", default="http://127.0.0.1/kite/callback")
    parser.add_argument("--postback-url")
    parser.add_argument("--user-id", default="AB1234")
    args = parser.parse_args()
    if bool(args.api_key) != bool(args.api_secret):
        parser.error("--api-key and --api-secret go together")
    if args.api_key:
        STATE.apps[args.api_key] = App(args.api_key, args.api_secret, args.redirect_url,
                                       args.postback_url, args.user_id)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=postback_worker, daemon=True).start()
    print(f"KITE_STUB_PORT={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
