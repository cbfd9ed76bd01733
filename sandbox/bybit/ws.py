"""Bybit's public V5 WebSocket (``/v5/public/{spot,linear,inverse,option,spread}``) with ``publicTrade`` pushes.

The point is to let pybit's ``WebSocket`` (and any raw client) run unchanged against the sandbox, so every
reply has the exact shape pybit's dispatcher expects (reference §12).  pybit is unforgiving: a frame with
neither ``topic`` nor ``op`` (and no ``type: COMMAND_RESP``) raises ``KeyError`` and kills the stream for
good, a subscribe reply whose ``req_id`` it does not know raises too, and ``success: false`` crashes its
handler.  The rules this module keeps:

* subscribe / unsubscribe replies echo the client's ``req_id`` and carry ``success``; spot says
  ``ret_msg: "subscribe"``, linear / inverse / spread say ``""``, option answers ``type: COMMAND_RESP`` with
  ``data.successTopics`` / ``failTopics``.  More than 10 args, an unsupported topic, or a topic already
  subscribed on this connection gives ``success: false`` (what Bybit does; pybit then fails, as it would live).
* ``{"op": "ping"}`` gets the channel's pong (spot/linear: ``ret_msg: "pong"``; option: ``op: "pong"``).
  Protocol PING frames are answered by the ``websockets`` library under uvicorn (``ws="websockets"``).
* Every other frame is a ``publicTrade.<SYMBOL>`` snapshot for a topic the connection subscribed to.
* Subscribe replies wait ``SUBSCRIBE_REPLY_DELAY_S`` (a stand-in for network latency): pybit registers the
  ``req_id`` and the topic callback only *after* its ``send`` returns, so an instant local reply could
  overtake that bookkeeping and crash it, something that cannot happen across a real network.

Trades come from one seeded random walk per symbol, shared by all connections (BTC around 60 000 USDT,
other coins from a small table or a price derived from the symbol's name), generated lazily in 0.2 s slots.
Any symbol is accepted.

Faults: ``{"kind": "ws_drop", "path": "/v5/public/spot"}`` (or any prefix such as ``/v5/public``) drops every
live connection of the matching channels once per use: without ``code`` the TCP connection is aborted with no
close frame (what a network drop looks like; pybit reconnects and re-subscribes), with ``code`` a proper close
frame with that code is sent (pybit then just stops, which is pybit's own behaviour).
Not simulated: the 500-connections-per-5-min and 21 000-characters-of-args limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, WebSocket

CHANNELS = ("spot", "linear", "inverse", "option", "spread")
MAX_ARGS = 10
SLOT_S = 0.2  # trade generation granularity
PUSH_POLL_S = 0.1
IDLE_TIMEOUT_S = 600.0  # real seconds, like Bybit's 10-minute idle drop (not scaled by --speed)
SUBSCRIBE_REPLY_DELAY_S = 0.02
MAX_TRADES_PER_PUSH = 1024
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9_\-]{1,39}$")

# USD prices of common bases; anything else gets a stable name-derived price.
BASE_USD = {"BTC": 60000.0, "ETH": 3000.0, "SOL": 150.0, "BNB": 550.0, "XRP": 0.6, "DOGE": 0.15, "TON": 6.0,
            "ADA": 0.45, "TRX": 0.12, "LTC": 80.0, "DOT": 7.0, "AVAX": 35.0, "LINK": 15.0, "USDT": 1.0,
            "USDC": 1.0, "DAI": 1.0, "USDE": 1.0}
QUOTES = ("USDT", "USDC", "USDE", "USD", "BTC", "ETH", "EUR", "BRL", "TRY", "PLN", "RUB")
TICKS = ("PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick")


def base_price(symbol: str) -> float:
    """A plausible starting price for any symbol name (BTCUSDT ~ 60 000; ETHBTC ~ 0.05; FOOUSDT derived)."""
    head = symbol.split("-")[0]  # options/futures: BTC-27DEC24-60000-C, BTCUSDT-27DEC24
    base, quote = head, "USDT"
    for q in QUOTES:
        if head.endswith(q) and len(head) > len(q):
            base, quote = head[: -len(q)], q
            break

    def usd(coin: str) -> float:
        if coin in BASE_USD:
            return BASE_USD[coin]
        return 10 ** random.Random(f"ws-coin:{coin}").uniform(-2.0, 2.5)

    if quote in ("USDT", "USDC", "USDE", "USD", "EUR"):
        return usd(base)
    if quote in ("BTC", "ETH"):
        return usd(base) / usd(quote)
    return usd(base) * {"BRL": 5.0, "TRY": 32.0, "PLN": 4.0, "RUB": 80.0}.get(quote, 1.0)


def _decimals(price: float) -> int:
    if price >= 1000:
        return 2
    if price >= 1:
        return 4
    return max(6, 3 - int(math.floor(math.log10(price))))


@dataclass
class SymbolFeed:
    symbol: str
    rng: random.Random
    price: float
    slot: int
    seq: int
    trade_id: int
    trades: deque = field(default_factory=lambda: deque(maxlen=4096))


class TradeFeed:
    """Seeded per-symbol trade tapes; every connection reads the same tape from its own cursor."""

    def __init__(self, seed: int, channel: str) -> None:
        self.seed = seed
        self.channel = channel
        self.symbols: dict[str, SymbolFeed] = {}

    def _feed(self, symbol: str) -> SymbolFeed:
        feed = self.symbols.get(symbol)
        if feed is None:
            rng = random.Random(f"ws-trades:{self.seed}:{self.channel}:{symbol}")
            feed = SymbolFeed(symbol=symbol, rng=rng, price=base_price(symbol) * rng.uniform(0.98, 1.02),
                              slot=int(time.time() / SLOT_S) - 1, seq=rng.randrange(10**9, 5 * 10**9),
                              trade_id=rng.randrange(10**15, 10**16))
            self.symbols[symbol] = feed
        return feed

    def advance(self, symbol: str) -> SymbolFeed:
        """Generate the trades of every *finished* slot (so no fill time lies in the future), oldest first.

        A long gap (nobody listened) only moves the price; it does not replay a burst of old trades.
        """
        feed = self._feed(symbol)
        last_done = int(time.time() / SLOT_S) - 1
        if last_done - feed.slot > 50:
            for _ in range(min(last_done - feed.slot - 50, 10_000)):
                feed.price *= math.exp(feed.rng.gauss(0.0, 0.0004))
            feed.slot = last_done - 50
        decimals = _decimals(feed.price)
        while feed.slot < last_done:
            feed.slot += 1
            n = feed.rng.choice((0, 1, 1, 2, 3))
            offsets = sorted(feed.rng.randrange(int(SLOT_S * 1000)) for _ in range(n))
            for offset in offsets:
                previous = feed.price
                feed.price *= math.exp(feed.rng.gauss(0.0, 0.0004))
                feed.seq += feed.rng.randint(1, 40)
                feed.trade_id += 1
                notional = math.exp(feed.rng.uniform(math.log(5), math.log(20000)))
                size = max(notional / feed.price, 10 ** -6)
                size_dec = 6 if size < 1 else 3
                trade: dict[str, Any] = {
                    "T": int(feed.slot * SLOT_S * 1000) + offset,
                    "s": symbol,
                    "S": "Buy" if feed.price >= previous else "Sell",
                    "v": f"{size:.{size_dec}f}",
                    "p": f"{feed.price:.{decimals}f}",
                    "i": str(feed.trade_id) if self.channel == "spot"
                    else str(uuid.UUID(int=feed.rng.getrandbits(128), version=4)),
                    "BT": False,
                    "RPI": False,
                    "seq": feed.seq,
                }
                if self.channel in ("linear", "inverse"):
                    trade["L"] = TICKS[0] if feed.price > previous else TICKS[2]
                feed.trades.append(trade)
        return feed

    def since(self, symbol: str, seq: int) -> list[dict[str, Any]]:
        feed = self.advance(symbol)
        fresh = [t for t in feed.trades if t["seq"] > seq]
        return fresh[-MAX_TRADES_PER_PUSH:]

    def last_seq(self, symbol: str) -> int:
        return self.advance(symbol).seq


@dataclass
class Connection:
    conn_id: str
    channel: str
    websocket: WebSocket
    topics: dict[str, int] = field(default_factory=dict)  # topic -> last seq delivered
    drop: int | None = None  # set by the fault ticker: 0 = abort the TCP connection, else a close code
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Hub:
    def __init__(self, world: Any) -> None:
        self.world = world
        self.feeds = {channel: TradeFeed(int(world.seed), channel) for channel in CHANNELS}
        self.connections: dict[str, Connection] = {}

    def tick(self, _now: float) -> None:
        """Consume ws_drop faults for channels with live connections and flag those connections."""
        for channel in CHANNELS:
            live = [c for c in list(self.connections.values()) if c.channel == channel and c.drop is None]
            if not live:
                continue
            fault = self.world.faults.take(f"/v5/public/{channel}", ("ws_drop",))
            if fault is None:
                continue
            for conn in live:
                conn.drop = int(fault.code or 0)
            self.world.record("ws_drop", channel=channel, connections=len(live), close_code=fault.code)


def _abort(websocket: WebSocket) -> bool:
    """Kill the TCP connection without a close frame (uvicorn's websockets protocol keeps the transport)."""
    protocol = getattr(getattr(websocket, "_receive", None), "__self__", None)
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True


class Session:
    """One client connection: parses requests, answers them in the channel's dialect, pushes trades."""

    def __init__(self, hub: Hub, conn: Connection) -> None:
        self.hub = hub
        self.conn = conn
        self.feed = hub.feeds[conn.channel]

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.conn.send_lock:
            await self.conn.websocket.send_text(json.dumps(frame, separators=(",", ":")))

    # -- replies ------------------------------------------------------------------------------------------
    def _reply(self, op: str, req_id: Any, success: bool, ret_msg: str, ok: list[str], failed: list[str]) -> dict:
        channel = self.conn.channel
        if channel == "option" and op == "subscribe":
            frame: dict[str, Any] = {"success": success, "conn_id": self.conn.conn_id}
            if req_id:
                frame["req_id"] = req_id
            if not success:
                frame["ret_msg"] = ret_msg
            frame["data"] = {"failTopics": failed, "successTopics": ok}
            frame["type"] = "COMMAND_RESP"
            return frame
        if success and op in ("subscribe", "unsubscribe"):
            ret_msg = op if channel == "spot" else ""
        frame = {"success": success, "ret_msg": ret_msg, "conn_id": self.conn.conn_id,
                 "req_id": req_id if req_id is not None else "", "op": op}
        if channel == "option":  # unverified shape for option unsubscribe; pybit dispatches it by "op"
            frame["data"] = {"failTopics": failed, "successTopics": ok}
        return frame

    def _pong(self, req_id: Any) -> dict[str, Any]:
        channel = self.conn.channel
        if channel == "option":
            return {"args": [str(int(time.time() * 1000))], "op": "pong"}
        frame: dict[str, Any] = {"success": True, "ret_msg": "pong", "conn_id": self.conn.conn_id}
        if channel != "spot" or req_id:
            frame["req_id"] = req_id or ""
        frame["op"] = "ping"
        return frame

    async def handle(self, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            await self.send({"success": False, "ret_msg": "error:request must be a JSON object",
                             "conn_id": self.conn.conn_id, "op": ""})
            return
        op = request.get("op")
        req_id = request.get("req_id")
        if op == "ping":
            await self.send(self._pong(req_id))
        elif op in ("subscribe", "unsubscribe"):
            await asyncio.sleep(SUBSCRIBE_REPLY_DELAY_S)
            await self.send(self._subscription(op, req_id, request.get("args")))
        else:
            await self.send({"success": False, "ret_msg": f"error:unsupported op {op!r} on a public stream",
                             "conn_id": self.conn.conn_id, "req_id": req_id or "", "op": str(op or "")})

    def _subscription(self, op: str, req_id: Any, args: Any) -> dict[str, Any]:
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            return self._reply(op, req_id, False, "error:args must be a non-empty list of topic strings", [],
                               list(args) if isinstance(args, list) else [])
        if len(args) > MAX_ARGS:
            return self._reply(op, req_id, False, f"error:args size >{MAX_ARGS}", [], list(args))
        ok: list[str] = []
        failed: list[str] = []
        errors: list[str] = []
        for topic in args:
            name, _, symbol = topic.partition(".")
            if op == "unsubscribe":
                if topic in self.conn.topics:
                    del self.conn.topics[topic]
                    ok.append(topic)
                else:
                    failed.append(topic)
                    errors.append(f"error:not subscribed,topic:{topic}")
            elif name != "publicTrade" or not _SYMBOL.match(symbol):
                failed.append(topic)
                errors.append(f"error:handler not found,topic:{topic}")
            elif topic in self.conn.topics:
                failed.append(topic)
                errors.append(f"error:already subscribed,topic:{topic}")
            else:
                # Only trades after the subscription reach the client, like on the real stream.
                self.conn.topics[topic] = self.feed.last_seq(symbol)
                ok.append(topic)
        return self._reply(op, req_id, not failed, ";".join(errors), ok, failed)

    # -- pushes -------------------------------------------------------------------------------------------
    async def push_loop(self) -> None:
        while True:
            await asyncio.sleep(PUSH_POLL_S)
            if self.conn.drop is not None:
                if self.conn.drop == 0 and _abort(self.conn.websocket):
                    return
                with contextlib.suppress(Exception):
                    await self.conn.websocket.close(code=self.conn.drop or 1011)
                return
            for topic, cursor in list(self.conn.topics.items()):
                trades = self.feed.since(topic.partition(".")[2], cursor)
                if not trades or topic not in self.conn.topics:
                    continue
                self.conn.topics[topic] = trades[-1]["seq"]
                await self.send({"topic": topic, "type": "snapshot", "ts": int(time.time() * 1000), "data": trades})


def install(app: FastAPI, world: Any) -> None:
    hub = Hub(world)
    world.bybit_ws = hub
    world.on_tick(hub.tick)

    @app.websocket("/v5/public/{channel}")
    async def public_stream(websocket: WebSocket, channel: str) -> None:
        if channel not in CHANNELS:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        conn = Connection(conn_id=str(uuid.uuid4()), channel=channel, websocket=websocket)
        with world.lock:
            hub.connections[conn.conn_id] = conn
        session = Session(hub, conn)
        pusher = asyncio.create_task(session.push_loop())
        try:
            while not pusher.done():
                receive = asyncio.ensure_future(websocket.receive())
                done, _ = await asyncio.wait({receive, pusher}, timeout=IDLE_TIMEOUT_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    receive.cancel()
                    if not done:  # idle for too long: Bybit drops such connections
                        with contextlib.suppress(Exception):
                            await websocket.close(code=1000)
                    break
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None and message.get("bytes") is not None:
                    text = message["bytes"].decode("utf-8", "replace")
                if text is not None:
                    await session.handle(text)
        except Exception:  # a broken client must never take the server down
            pass
        finally:
            pusher.cancel()
            with world.lock:
                hub.connections.pop(conn.conn_id, None)

    @app.get("/sandbox/bybit/ws")
    def live_connections() -> dict[str, Any]:
        """Live public-stream connections (tests use it to see a reconnect: a new conn_id, same topics)."""
        with world.lock:
            return {"connections": [{"conn_id": c.conn_id, "channel": c.channel, "topics": sorted(c.topics)}
                                    for c in hub.connections.values()]}
