"""The sandbox's public V5 WebSocket, driven by the real pybit ``WebSocket`` and by a raw ``websockets`` client.

A dedicated sandbox, because the ``ws_drop`` fault drops every live connection of a channel.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.support import Sandbox


@pytest.fixture(scope="module")
def box():
    sandbox = Sandbox(seed=5, speed=1.0)
    yield sandbox
    sandbox.close()


@pytest.fixture
def pybit_ws(box, monkeypatch):
    """A factory of pybit WebSockets pointed at the sandbox; every one is closed after the test."""
    import pybit.unified_trading as unified

    monkeypatch.setattr(unified, "PUBLIC_WSS", f"ws://127.0.0.1:{box.port}/v5/public/{{CHANNEL_TYPE}}")
    made = []

    def make(channel: str = "spot"):
        ws = unified.WebSocket(channel_type=channel, testnet=False, retries=3)
        made.append(ws)
        return ws

    yield make
    for ws in made:
        ws.exit()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def raw(box: Sandbox, channel: str = "spot") -> ClientConnection:
    return connect(f"ws://127.0.0.1:{box.port}/v5/public/{channel}", open_timeout=5)


def request(ws: ClientConnection, frame: dict) -> dict:
    """Send one request and return the first reply that is not a trade push."""
    ws.send(json.dumps(frame))
    while True:
        reply = json.loads(ws.recv(timeout=5))
        if "topic" not in reply:
            return reply


def check_trade_push(message: dict, symbol: str) -> None:
    assert message["topic"] == f"publicTrade.{symbol}" and message["type"] == "snapshot"
    assert isinstance(message["ts"], int) and message["data"]
    times = [t["T"] for t in message["data"]]
    assert times == sorted(times) and times[-1] <= message["ts"]
    for trade in message["data"]:
        assert trade["s"] == symbol and trade["S"] in ("Buy", "Sell")
        assert isinstance(trade["v"], str) and float(trade["v"]) > 0
        assert isinstance(trade["p"], str) and float(trade["p"]) > 0
        assert isinstance(trade["i"], str) and isinstance(trade["seq"], int)
        assert trade["BT"] is False and trade["RPI"] is False


def test_pybit_receives_trades_for_btc_and_any_symbol(pybit_ws):
    got: dict[str, list[dict]] = {"BTCUSDT": [], "ZZTOPUSDT": []}
    lock = threading.Lock()

    def on_message(message: dict) -> None:
        with lock:
            got[message["data"][0]["s"]].append(message)

    ws = pybit_ws("spot")
    ws.trade_stream(symbol=["BTCUSDT", "ZZTOPUSDT"], callback=on_message)
    assert wait_for(lambda: all(len(v) >= 2 for v in got.values()))
    assert ws.is_connected()
    with lock:
        for symbol, messages in got.items():
            for message in messages:
                check_trade_push(message, symbol)
        btc = float(got["BTCUSDT"][-1]["data"][-1]["p"])
        seqs = [t["seq"] for m in got["BTCUSDT"] for t in m["data"]]
    assert 50_000 < btc < 70_000
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # no trade delivered twice


def test_pybit_linear_stream(pybit_ws):
    got: list[dict] = []
    ws = pybit_ws("linear")
    ws.trade_stream(symbol="ETHUSDT", callback=got.append)
    assert wait_for(lambda: len(got) >= 1)
    check_trade_push(got[0], "ETHUSDT")
    assert all("L" in t for t in got[0]["data"])  # tick direction: perps only


def test_subscribe_reply_shapes_echo_req_id(box):
    with raw(box, "spot") as ws:
        reply = request(ws, {"req_id": "sub-1", "op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
        assert reply["success"] is True and reply["ret_msg"] == "subscribe"
        assert reply["req_id"] == "sub-1" and reply["op"] == "subscribe" and reply["conn_id"]
        reply = request(ws, {"req_id": "sub-1", "op": "unsubscribe", "args": ["publicTrade.BTCUSDT"]})
        assert reply["success"] is True and reply["req_id"] == "sub-1" and reply["op"] == "unsubscribe"
    with raw(box, "linear") as ws:
        reply = request(ws, {"req_id": "L1", "op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
        assert reply == {"success": True, "ret_msg": "", "conn_id": reply["conn_id"], "req_id": "L1",
                         "op": "subscribe"}
    with raw(box, "option") as ws:
        reply = request(ws, {"req_id": "O1", "op": "subscribe", "args": ["publicTrade.BTC-27DEC24-60000-C"]})
        assert reply["type"] == "COMMAND_RESP" and reply["success"] is True
        assert reply["data"] == {"failTopics": [], "successTopics": ["publicTrade.BTC-27DEC24-60000-C"]}


def test_ping_pong_shapes_and_protocol_ping(box):
    with raw(box, "spot") as ws:
        assert ws.ping().wait(5)  # a protocol PING frame gets a PONG frame
        reply = request(ws, {"op": "ping"})
        assert reply["success"] is True and reply["ret_msg"] == "pong" and reply["op"] == "ping"
        assert request(ws, {"req_id": "p7", "op": "ping"})["req_id"] == "p7"
    with raw(box, "linear") as ws:
        reply = request(ws, {"op": "ping"})
        assert reply["ret_msg"] == "pong" and reply["req_id"] == "" and reply["op"] == "ping"
    with raw(box, "option") as ws:
        reply = request(ws, {"op": "ping"})
        assert reply["op"] == "pong" and len(reply["args"]) == 1 and reply["args"][0].isdigit()


def test_refusals_say_success_false(box):
    with raw(box, "spot") as ws:
        eleven = [f"publicTrade.SYM{i}USDT" for i in range(11)]
        reply = request(ws, {"req_id": "many", "op": "subscribe", "args": eleven})
        assert reply["success"] is False and reply["req_id"] == "many" and reply["op"] == "subscribe"
        reply = request(ws, {"req_id": "bad", "op": "subscribe", "args": ["orderbook.nonsense"]})
        assert reply["success"] is False and "orderbook.nonsense" in reply["ret_msg"]
        request(ws, {"req_id": "ok", "op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
        reply = request(ws, {"req_id": "dup", "op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
        assert reply["success"] is False
    with pytest.raises(InvalidStatus):  # the handshake itself is refused for unknown channels
        raw(box, "nonsense").close()


def test_every_frame_has_topic_or_op(box):
    frames: list[dict] = []
    with raw(box, "spot") as ws:
        ws.send(json.dumps({"req_id": "a", "op": "subscribe", "args": ["publicTrade.BTCUSDT", "publicTrade.XRPUSDT"]}))
        ws.send(json.dumps({"op": "ping"}))
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            frames.append(json.loads(ws.recv(timeout=5)))
        ws.send(json.dumps({"req_id": "a", "op": "unsubscribe", "args": ["publicTrade.XRPUSDT"]}))
        after_unsub: list[dict] = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            after_unsub.append(json.loads(ws.recv(timeout=5)))
    frames += after_unsub
    assert all("topic" in f or "op" in f for f in frames)
    assert {f["topic"] for f in frames if "topic" in f} == {"publicTrade.BTCUSDT", "publicTrade.XRPUSDT"}
    reply_at = next(i for i, f in enumerate(after_unsub) if f.get("op") == "unsubscribe")
    assert all(f.get("topic") != "publicTrade.XRPUSDT" for f in after_unsub[reply_at + 1:])


def test_ws_drop_fault_and_pybit_reconnects(box, pybit_ws):
    got: list[dict] = []
    ws = pybit_ws("spot")
    ws.trade_stream(symbol="BTCUSDT", callback=got.append)
    assert wait_for(lambda: len(got) >= 1)

    def spot_connections() -> list[dict]:
        conns = requests.get(f"{box.url}/sandbox/bybit/ws", timeout=5).json()["connections"]
        return [c for c in conns if c["channel"] == "spot"]

    assert wait_for(lambda: len(spot_connections()) == 1)
    before = spot_connections()[0]["conn_id"]
    box.control("POST", "/sandbox/faults", json={"kind": "ws_drop", "path": "/v5/public/spot"})
    assert wait_for(lambda: any(e["channel"] == "spot" for e in box.control("GET", "/sandbox/truth?kind=ws_drop")["events"]))
    # pybit notices the lost connection, reconnects and re-sends its subscription with the original req_id.
    assert wait_for(lambda: [c["conn_id"] for c in spot_connections()] not in ([], [before])
                    and spot_connections()[0]["topics"] == ["publicTrade.BTCUSDT"])
    seen = len(got)
    assert wait_for(lambda: len(got) > seen + 1)
    assert ws.is_connected()
    assert box.control("GET", "/sandbox/faults")["faults"] == []  # the fault was used once
