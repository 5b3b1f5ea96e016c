"""Fidelity of the Kite stub: Zerodha's official `kiteconnect` client from PyPI against kite_stub.py.

The stub is only worth testing an adapter against if the real client can log in through it and
parse every answer it gives. This script starts the stub, runs the client's login (the consent
page, the redirect with `request_token` and the carried `redirect_params`, the checksum exchange),
then every REST call Kavach's adapter will make, and checks that the stub's errors raise the
client's own exception classes. It also receives the stub's postbacks and verifies their
checksums the way Zerodha's documentation describes.

Fails closed: a missing or different `kiteconnect` is a failure, as is any unmet expectation.
Usage: kite_fidelity.py   (exit status 0 only if every check passed)
"""

import concurrent.futures
import datetime
import hashlib
import importlib.metadata
import hmac
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

HERE = pathlib.Path(__file__).resolve().parent
PINNED = re.search(r"^kiteconnect==(\S+)$",
                   (HERE.parent.parent / "scripts" / "requirements.txt").read_text(), re.M).group(1)
API_KEY, API_SECRET = "kavachtestkey", "kavach-test-secret"

failures = []
passed = 0


def expect(name, condition, detail=""):
    global passed
    if condition:
        passed += 1
        print(f"  ok   {name}")
    else:
        failures.append(name)
        print(f"  FAIL {name}: {detail}")


def raises(name, exc_class, fn, *args, **kwargs):
    """The call must raise exactly `exc_class` (the client's mapping of the stub's error)."""
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the class is the thing under test
        expect(name, type(e) is exc_class, f"raised {type(e).__name__}: {e}")
        return e
    expect(name, False, f"returned {result!r}, expected {exc_class.__name__}")
    return None


# -- the postback receiver: Kavach's side of Kite's webhook, reduced to recording --------------

POSTBACKS = []


class Receiver(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        POSTBACKS.append((self.headers.get("Content-Type"), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def postback_valid(payload, secret):
    """Zerodha's documented check: SHA-256(order_id + order_timestamp + api_secret), compared in
    constant time."""
    expected = hashlib.sha256(
        (payload["order_id"] + payload["order_timestamp"] + secret).encode()).hexdigest()
    return hmac.compare_digest(expected, payload.get("checksum", ""))


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def main():
    started = time.monotonic()
    installed = importlib.metadata.version("kiteconnect")
    expect("kiteconnect is the pinned version", installed == PINNED,
           f"installed {installed}, scripts/requirements.txt pins {PINNED}")

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    postback_url = f"http://127.0.0.1:{receiver.server_address[1]}/kite/postback"
    redirect_url = "http://127.0.0.1:9/broker/callback/zerodha"

    stub = subprocess.Popen(
        [sys.executable, str(HERE / "kite_stub.py"), "--api-key", API_KEY, "--api-secret", API_SECRET,
         "--redirect-url", redirect_url, "--postback-url", postback_url],
        stdout=subprocess.PIPE, text=True)
    try:
        line = stub.stdout.readline()
        m = re.match(r"KITE_STUB_PORT=(\d+)", line)
        if not m:
            print(f"FAIL the stub did not start: {line!r}")
            return 1
        try:
            run(f"http://127.0.0.1:{m.group(1)}", postback_url)
        except Exception:  # noqa: BLE001 - a call the client could not make or parse ends the run
            traceback.print_exc()
            expect("the run completed", False, "stopped by the exception above")
    finally:
        stub.terminate()
        stub.wait(timeout=5)
        receiver.shutdown()
    took = time.monotonic() - started
    print(f"kite fidelity: {passed} passed, {len(failures)} failed in {took:.1f} s")
    if failures:
        print("failed: " + ", ".join(failures))
        return 1
    return 0


def run(root, postback_url):
    ctl = requests.Session()

    def control(method, name, body=None):
        r = ctl.request(method, f"{root}/__stub/{name}", json=body)
        r.raise_for_status()
        return r.json()

    # The static-IP rule is configured per app; start with the loopback address registered.
    control("POST", "apps", {"api_key": API_KEY, "api_secret": API_SECRET,
                             "redirect_url": "http://127.0.0.1:9/broker/callback/zerodha",
                             "postback_url": postback_url, "allowed_ips": ["127.0.0.1"]})

    # Kite's rate limits are checked on their own below; the functional checks run unthrottled.
    control("POST", "config", {"rate_limits_enabled": False})

    print("login")
    kite = KiteConnect(api_key=API_KEY, root=root)
    kite._default_login_uri = f"{root}/connect/login"  # the client's login URL, pointed at the stub
    state = "st-" + os.urandom(8).hex()
    login_url = kite.login_url() + "&redirect_params=" + urllib.parse.quote(f"state={state}&next=/broker")
    page = requests.get(login_url)
    expect("consent page is HTML with an Authorize form",
           page.status_code == 200 and "text/html" in page.headers["content-type"]
           and 'id="authorize"' in page.text and 'name="redirect_params"' in page.text, page.text[:200])
    form = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    form = {k: v.replace("&amp;", "&") for k, v in form.items()}
    r = requests.post(f"{root}/connect/login", data={**form, "action": "authorize"}, allow_redirects=False)
    location = r.headers.get("Location", "")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    expect("Authorize redirects to the registered URL",
           r.status_code == 302 and location.startswith("http://127.0.0.1:9/broker/callback/zerodha?"), location)
    expect("redirect carries action=login, status=success and a request_token",
           q.get("action") == ["login"] and q.get("status") == ["success"] and len(q.get("request_token", [""])[0]) >= 16,
           location)
    expect("redirect carries the redirect_params back (Kavach's one-time state)",
           q.get("state") == [state] and q.get("next") == ["/broker"], location)
    request_token = q["request_token"][0]

    raises("a wrong api_secret fails the checksum: TokenException", kex.TokenException,
           kite.generate_session, request_token, "not-the-secret")
    session = kite.generate_session(request_token, API_SECRET)
    expect("generate_session returns an access_token and sets it", session.get("access_token")
           and kite.access_token == session["access_token"], session)
    expect("login_time parses to a datetime", isinstance(session["login_time"], datetime.datetime), session)
    expect("session carries the user", session["user_id"] == "AB1234" and session["api_key"] == API_KEY, session)
    raises("a request_token is single-use: TokenException", kex.TokenException,
           KiteConnect(api_key=API_KEY, root=root).generate_session, request_token, API_SECRET)
    control("POST", "config", {"request_token_ttl_seconds": 0})
    raises("an expired request_token: TokenException", kex.TokenException, login, root, control)
    control("POST", "config", {"request_token_ttl_seconds": 300})

    print("account")
    prof = kite.profile()
    expect("profile", prof["user_id"] == "AB1234" and "NSE" in prof["exchanges"], prof)
    margins = kite.margins()
    expect("margins: both segments", set(margins) == {"equity", "commodity"}
           and margins["equity"]["available"]["cash"] > 0, margins)
    eq = kite.margins("equity")
    expect("margins(equity)", eq["enabled"] and "net" in eq and "utilised" in eq, eq)
    raises("margins(bad segment): InputException", kex.InputException, kite.margins, "crypto")

    print("orders")
    raises("MARKET without market_protection: InputException", kex.InputException, kite.place_order,
           variety=kite.VARIETY_REGULAR, exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
           quantity=1, product=kite.PRODUCT_CNC, order_type=kite.ORDER_TYPE_MARKET)
    raises("MARKET with market_protection=0: InputException", kex.InputException, kite.place_order,
           variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
           quantity=1, product="CNC", order_type="MARKET", market_protection=0)
    raises("LIMIT without a price: InputException", kex.InputException, kite.place_order,
           variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
           quantity=1, product="CNC", order_type="LIMIT")
    raises("unknown tradingsymbol: InputException", kex.InputException, kite.place_order,
           variety="regular", exchange="NSE", tradingsymbol="NOSUCH", transaction_type="BUY",
           quantity=1, product="CNC", order_type="LIMIT", price=10)
    raises("CNC on NFO: InputException", kex.InputException, kite.place_order,
           variety="regular", exchange="NFO", tradingsymbol="NIFTY26DECFUT", transaction_type="BUY",
           quantity=75, product="CNC", order_type="LIMIT", price=24000)

    market_id = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY",
                                 transaction_type="BUY", quantity=2, product="CNC", order_type="MARKET",
                                 market_protection=kite.MARKET_PROTECTION_AUTO, tag="kavach1")
    expect("place_order(MARKET, market_protection=-1) returns an order_id",
           isinstance(market_id, str) and market_id.isdigit(), market_id)
    history = kite.order_history(market_id)
    statuses = [h["status"] for h in history]
    expect("order_history ends COMPLETE", statuses[-1] == "COMPLETE" and statuses[0] == "PUT ORDER REQ RECEIVED",
           statuses)
    expect("order_history timestamps parse to datetimes",
           all(isinstance(h["order_timestamp"], datetime.datetime) for h in history), history[-1])
    done = history[-1]
    expect("MARKET filled at the stub's LTP", done["average_price"] == 1500.0 and done["filled_quantity"] == 2, done)

    limit_id = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="SBIN",
                                transaction_type="BUY", quantity=3, product="MIS", order_type="LIMIT", price=790)
    book = {o["order_id"]: o for o in kite.orders()}
    expect("a non-marketable LIMIT stays OPEN", book[limit_id]["status"] == "OPEN", book.get(limit_id))
    expect("orders() parses order_timestamp", isinstance(book[limit_id]["order_timestamp"], datetime.datetime),
           book[limit_id])
    raises("modify LIMIT to MARKET without market_protection: InputException", kex.InputException,
           kite.modify_order, "regular", limit_id, order_type="MARKET")
    same = kite.modify_order("regular", limit_id, price=795)
    book = {o["order_id"]: o for o in kite.orders()}
    expect("modify_order keeps it OPEN at the new price", same == limit_id and book[limit_id]["price"] == 795
           and book[limit_id]["modified"] is True, book[limit_id])
    kite.modify_order("regular", limit_id, price=805)
    expect("a LIMIT made marketable fills", kite.order_history(limit_id)[-1]["status"] == "COMPLETE",
           kite.order_history(limit_id)[-1])
    raises("modify a COMPLETE order: InputException", kex.InputException,
           kite.modify_order, "regular", limit_id, price=806)
    raises("autoslice is refused, not faked: InputException", kex.InputException, kite.place_autoslice_order,
           variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
           product="CNC", order_type="LIMIT", price=1400)

    cancel_id = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="TCS",
                                 transaction_type="SELL", quantity=1, product="MIS", order_type="LIMIT", price=3600)
    expect("cancel_order returns the order_id", kite.cancel_order("regular", cancel_id) == cancel_id)
    last = kite.order_history(cancel_id)[-1]
    expect("cancelled order is CANCELLED with its quantity", last["status"] == "CANCELLED"
           and last["cancelled_quantity"] == 1, last)
    raises("unknown order_id: InputException", kex.InputException, kite.order_history, "999999999999999")

    sl_id = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="RELIANCE",
                             transaction_type="SELL", quantity=1, product="MIS", order_type="SL-M",
                             trigger_price=1290, market_protection=5)
    expect("SL-M waits in TRIGGER PENDING", kite.order_history(sl_id)[-1]["status"] == "TRIGGER PENDING")
    control("POST", "price", {"instrument": "NSE:RELIANCE", "last_price": 1285})
    last = kite.order_history(sl_id)[-1]
    expect("SL-M fills once the price crosses its trigger", last["status"] == "COMPLETE"
           and last["average_price"] == 1285, last)

    trades = kite.trades()
    expect("trades(): one per fill", {t["order_id"] for t in trades} == {market_id, limit_id, sl_id}, trades)
    expect("trade timestamps parse", all(isinstance(t["fill_timestamp"], datetime.datetime) for t in trades),
           trades[0])
    ot = kite.order_trades(market_id)
    expect("order_trades(MARKET)", len(ot) == 1 and ot[0]["quantity"] == 2, ot)

    print("portfolio")
    pos = kite.positions()
    net = {(p["tradingsymbol"], p["product"]): p for p in pos["net"]}
    expect("positions: net and day", set(pos) == {"net", "day"} and net[("INFY", "CNC")]["quantity"] == 2
           and net[("RELIANCE", "MIS")]["quantity"] == -1, pos)
    hold = kite.holdings()
    expect("holdings", any(h["tradingsymbol"] == "INFY" and h["quantity"] == 10 for h in hold), hold)

    print("market data")
    control("POST", "config", {"rate_limits_enabled": True, "reset_rate_limits": True})
    quote = kite.quote("NSE:INFY", "NFO:NIFTY26DECFUT", "NSE:NOSUCH")
    infy = quote.get("NSE:INFY", {})
    expect("quote: known instruments only", set(quote) == {"NSE:INFY", "NFO:NIFTY26DECFUT"}, list(quote))
    expect("quote: five-level depth each side", len(infy["depth"]["buy"]) == 5 and len(infy["depth"]["sell"]) == 5
           and infy["depth"]["sell"][0]["price"] > infy["depth"]["buy"][0]["price"], infy.get("depth"))
    expect("quote: timestamps parse, circuit limits present",
           isinstance(infy["timestamp"], datetime.datetime) and isinstance(infy["last_trade_time"], datetime.datetime)
           and infy["lower_circuit_limit"] < infy["last_price"] < infy["upper_circuit_limit"], infy)
    raises("a second quote within the second: 429 NetworkException", kex.NetworkException,
           kite.quote, "NSE:INFY")
    control("POST", "config", {"reset_rate_limits": True})
    ohlc = kite.ohlc("NSE:INFY")
    expect("ohlc", set(ohlc["NSE:INFY"]["ohlc"]) == {"open", "high", "low", "close"}, ohlc)
    control("POST", "config", {"reset_rate_limits": True})
    ltp = kite.ltp("NSE:SBIN", "408065")
    expect("ltp by symbol and by instrument token", ltp["NSE:SBIN"]["last_price"] == 800.0
           and ltp["408065"]["instrument_token"] == 408065, ltp)
    control("POST", "config", {"rate_limits_enabled": False})
    instruments = kite.instruments()
    by = {(i["exchange"], i["tradingsymbol"]): i for i in instruments}
    fut = by.get(("NFO", "NIFTY26DECFUT"), {})
    expect("instruments(): the CSV parses with the documented columns", len(instruments) >= 8
           and isinstance(fut.get("expiry"), datetime.date) and fut.get("lot_size") == 75
           and by[("NSE", "INFY")]["instrument_token"] == 408065, fut)
    nse = kite.instruments("NSE")
    expect("instruments(NSE) only NSE", nse and all(i["exchange"] == "NSE" for i in nse), nse)
    r = requests.get(f"{root}/instruments/NFO")
    expect("the dump, as documented, wants the session headers", r.status_code == 400, r.status_code)
    control("POST", "config", {"public_instruments": True})
    r = requests.get(f"{root}/instruments/NFO")
    expect("...unless switched public: gzipped CSV without a session",
           r.status_code == 200 and r.headers["content-type"] == "text/csv"
           and r.headers.get("content-encoding") == "gzip" and "NIFTY26DECFUT" in r.text, r.headers)
    control("POST", "config", {"public_instruments": False})
    day = kite.historical_data(408065, "2026-11-02", "2026-11-06", "day")
    expect("historical day candles: one per weekday", len(day) == 5
           and all(isinstance(c["date"], datetime.datetime) and c["high"] >= c["low"] for c in day), day)
    minute = kite.historical_data(408065, datetime.datetime(2026, 11, 2, 9, 15), datetime.datetime(2026, 11, 2, 9, 44),
                                  "5minute", oi=True)
    expect("historical 5minute candles with oi", len(minute) == 6 and all("oi" in c for c in minute), minute)
    raises("historical bad interval: InputException", kex.InputException,
           kite.historical_data, 408065, "2026-11-02", "2026-11-06", "2minute")
    raises("historical beyond the interval's window: InputException", kex.InputException,
           kite.historical_data, 408065, "2026-01-01", "2026-11-06", "minute")

    print("errors map to the client's exception classes")
    for preset, cls in [("session_expired", kex.TokenException), ("input", kex.InputException),
                        ("order", kex.OrderException), ("permission", kex.PermissionException),
                        ("network", kex.NetworkException), ("gateway_timeout", kex.NetworkException),
                        ("oms_down", kex.DataException), ("general", kex.GeneralException)]:
        control("POST", "inject", {"method": "GET", "path": "/user/profile", "preset": preset})
        e = raises(f"{preset} -> {cls.__name__}", cls, kite.profile)
        if e is not None:
            expect(f"{preset}: code is the HTTP status", e.code == {"session_expired": 403, "input": 400, "order": 500,
                   "permission": 403, "network": 503, "gateway_timeout": 504, "oms_down": 502,
                   "general": 500}[preset], e.code)
    control("POST", "inject", {"path": "/user/profile", "error": {"status": 500, "error_type": "NoSuchException",
                                                                 "message": "x"}})
    raises("an unknown error_type -> GeneralException", kex.GeneralException, kite.profile)
    expect("the injections were used up", kite.profile()["user_id"] == "AB1234")

    print("the static-IP rule and rejections")
    control("POST", "apps", {"api_key": API_KEY, "api_secret": API_SECRET,
                             "redirect_url": "http://127.0.0.1:9/broker/callback/zerodha",
                             "postback_url": postback_url, "allowed_ips": ["203.0.113.7"]})
    e = raises("an order from an unregistered IP: PermissionException", kex.PermissionException, kite.place_order,
               variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
               product="CNC", order_type="LIMIT", price=1400)
    expect("the refusal names the IP", e is not None and "127.0.0.1" in str(e), e)
    expect("non-order endpoints stay open from any IP", isinstance(kite.orders(), list))
    calls = control("GET", "calls?path=/orders/regular")
    expect("the call log shows the source IP of the refused order",
           calls and calls[-1]["client_ip"] == "127.0.0.1" and calls[-1]["status"] == 403, calls[-1:])
    control("POST", "apps", {"api_key": API_KEY, "api_secret": API_SECRET,
                             "redirect_url": "http://127.0.0.1:9/broker/callback/zerodha",
                             "postback_url": postback_url, "allowed_ips": None})
    control("POST", "inject", {"method": "POST", "path": "/orders/*", "preset": "ip_not_registered"})
    raises("the ip_not_registered preset: PermissionException", kex.PermissionException, kite.place_order,
           variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
           product="CNC", order_type="LIMIT", price=1400)
    expect("whoami reports the source IP the stub sees", control("GET", "whoami") == {"ip": "127.0.0.1"})
    control("POST", "inject", {"method": "POST", "path": "/orders/*",
                               "reject": "Insufficient funds. Required margin is 9999.00 but available margin is 1.00."})
    rejected_id = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                                   quantity=1, product="CNC", order_type="LIMIT", price=1400)
    last = kite.order_history(rejected_id)[-1]
    expect("an RMS rejection: accepted, then REJECTED with the message", last["status"] == "REJECTED"
           and last["status_message"].startswith("Insufficient funds"), last)

    print("an order whose outcome the caller never hears (timeout)")
    before = len(kite.orders())
    control("POST", "inject", {"method": "POST", "path": "/orders/regular", "latency_ms": 1200, "when": "after"})
    impatient = KiteConnect(api_key=API_KEY, access_token=kite.access_token, root=root, timeout=0.3)
    try:
        impatient.place_order(variety="regular", exchange="NSE", tradingsymbol="SBIN", transaction_type="BUY",
                              quantity=1, product="CNC", order_type="LIMIT", price=700)
        expect("the client times out", False, "returned")
    except requests.exceptions.ReadTimeout:
        expect("the client times out", True)
    expect("...yet the order was placed, exactly once", len(kite.orders()) == before + 1)

    print("rate limit on orders (10 per second)")
    control("POST", "config", {"rate_limits_enabled": True, "reset_rate_limits": True})
    def one(_):
        client = KiteConnect(api_key=API_KEY, access_token=kite.access_token, root=root)
        try:
            client.place_order(variety="regular", exchange="NSE", tradingsymbol="TCS", transaction_type="BUY",
                               quantity=1, product="MIS", order_type="LIMIT", price=3000)
            return 200
        except kex.NetworkException as e:
            return e.code

    # All at once, so they land within the second however loaded the machine is.
    burst = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=11) as pool:
        codes = sorted(pool.map(one, range(11)))
    burst = time.monotonic() - burst
    expect("11 orders at once: 10 pass, 1 gets 429", codes == [200] * 10 + [429],
           f"{codes} in {burst:.2f} s")
    control("POST", "config", {"rate_limits_enabled": False})

    print("postbacks")
    wait_for(lambda: len(control("GET", "postbacks")) >= 6)
    received = [json.loads(b) for ct, b in POSTBACKS if ct == "application/json"]
    statuses = {(p["order_id"], p["status"]) for p in received}
    expect("postbacks for COMPLETE, UPDATE, CANCELLED and REJECTED",
           {(market_id, "COMPLETE"), (limit_id, "UPDATE"), (limit_id, "COMPLETE"), (cancel_id, "CANCELLED"),
            (rejected_id, "REJECTED")} <= statuses, sorted(statuses))
    expect("every postback's checksum verifies", received and all(postback_valid(p, API_SECRET) for p in received),
           [p["order_id"] for p in received if not postback_valid(p, API_SECRET)])
    sample = next(p for p in received if p["order_id"] == market_id)
    expect("postback carries the documented fields", {"user_id", "unfilled_quantity", "app_id", "checksum",
           "placed_by", "order_id", "status", "order_timestamp", "exchange", "tradingsymbol", "instrument_token",
           "transaction_type", "quantity", "filled_quantity", "average_price"} <= set(sample), sorted(sample))
    expect("a checksum made with another secret does not verify", not postback_valid(sample, "not-the-secret"))
    control("POST", "config", {"postback_tamper": 1})
    tampered_id = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="SBIN", transaction_type="BUY",
                                   quantity=1, product="CNC", order_type="MARKET", market_protection=2)
    tampered = wait_for(lambda: [json.loads(b) for _, b in POSTBACKS if json.loads(b)["order_id"] == tampered_id])
    expect("a tampered postback (control API) fails verification", tampered and not postback_valid(tampered[0], API_SECRET),
           tampered)

    print("session end")
    hook = []
    kite.set_session_expiry_hook(lambda: hook.append(1))
    second = login(root, control)
    control("POST", "expire_sessions", {"api_key": API_KEY})
    raises("after the daily expiry: TokenException", kex.TokenException, kite.profile)
    expect("...and the client's session-expiry hook fired", hook == [1], hook)
    raises("the other session expired too", kex.TokenException, second.profile)
    fourth = login(root, control)
    control("POST", "clock", {"advance_seconds": 86401})
    raises("past the next 06:00 IST boundary: TokenException", kex.TokenException, fourth.profile)
    control("POST", "clock", {"offset_seconds": 0})
    third = login(root, control)
    expect("invalidate_access_token", third.invalidate_access_token() is True)
    raises("a revoked token: TokenException", kex.TokenException, third.profile)
    r = requests.get(f"{root}/user/profile", headers={"Authorization": f"token {API_KEY}:{third.access_token}"})
    expect("a request without X-Kite-Version is refused with 400", r.status_code == 400
           and r.json()["error_type"] == "InputException", r.text)
    # The raw requests above (the consent page, the public dump, the header-less profile) are
    # this script's own; every other call came from the client.
    own = {"/connect/login", "/instruments/NFO"}
    calls = [c for c in control("GET", "calls") if c["path"] not in own
             and not (c["path"] == "/user/profile" and c["status"] == 400)]
    expect("every client call carried X-Kite-Version: 3", calls and all(c["kite_version"] == "3" for c in calls),
           [c for c in calls if c["kite_version"] != "3"][:1])


def login(root, control):
    """A fresh login through the consent page, without the checks above."""
    kite = KiteConnect(api_key=API_KEY, root=root)
    page = requests.get(f"{root}/connect/login?v=3&api_key={API_KEY}")
    form = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    r = requests.post(f"{root}/connect/login", data={**form, "action": "authorize"}, allow_redirects=False)
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["request_token"][0]
    kite.generate_session(token, API_SECRET)
    return kite


if __name__ == "__main__":
    sys.exit(main())
