"""The benchmark's raw WebSocket client (bench/ws_fanout.py --client raw): handshake, frame
parser and the watcher protocol against a fake transport. No server, Redis or database."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from bench import ws_fanout as wf
from tests.wsframes import server_frame


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: nothing here touches Redis."""
    yield




def unmask_client_frame(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of a client frame, asserting FIN, the mask bit and a short length."""
    assert frame[0] & 0x80, "FIN"
    assert frame[1] & 0x80, "client frames must be masked"
    n = frame[1] & 0x7F
    assert n < 126
    mask, body = frame[2:6], frame[6:]
    assert len(body) == n
    return frame[0] & 0x0F, wf.apply_mask(body, mask)


class Collect(wf.FrameReader):
    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple] = []

    def on_text(self, text):
        self.got.append(("text", text))

    def on_binary(self, data):
        self.got.append(("binary", data))

    def on_ping(self, payload):
        self.got.append(("ping", payload))

    def on_pong(self, payload):
        self.got.append(("pong", payload))

    def on_close(self, code, reason):
        self.got.append(("close", code, reason))


def test_accept_key_rfc6455_example():
    # RFC 6455 section 1.3's example key and answer.
    assert wf.ws_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    key = wf.ws_key()
    assert len(base64.b64decode(key)) == 16
    from websockets.utils import accept_key

    assert wf.ws_accept(key) == accept_key(key)


def test_upgrade_request_and_response():
    req = wf.upgrade_request("127.0.0.1", 8001, "/ws/auctions/7/", "dGhlIHNhbXBsZSBub25jZQ==").decode()
    assert req.startswith("GET /ws/auctions/7/ HTTP/1.1\r\n") and req.endswith("\r\n\r\n")
    for line in ("Host: 127.0.0.1:8001", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"):
        assert f"\r\n{line}\r\n" in req
    assert "Extensions" not in req
    assert wf.split_ws_url("ws://127.0.0.1:8001/ws/auctions/7/") == ("127.0.0.1", 8001, "/ws/auctions/7/")

    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ok = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    assert wf.check_upgrade_response(ok, key) is None
    assert wf.check_upgrade_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0", key) == "HTTP/1.1 403 Forbidden"
    bad = wf.check_upgrade_response(ok.replace(b"s3pP", b"AAAA"), key)
    assert bad.startswith("HTTP/1.1 101 Switching Protocols: Sec-WebSocket-Accept")
    assert "extensions" in wf.check_upgrade_response(ok + b"\r\nSec-WebSocket-Extensions: permessage-deflate", key)


def test_coalesced_and_split_chunks_give_the_same_frames():
    stream = (server_frame(wf.OP_TEXT, b'{"a":1}') + server_frame(wf.OP_PING, b"hi")
              + server_frame(wf.OP_TEXT, "é".encode() * 200)  # 400 bytes: 16-bit length
              + server_frame(wf.OP_BINARY, b"\x00\x01") + server_frame(wf.OP_TEXT, b""))
    expected = [("text", '{"a":1}'), ("ping", b"hi"), ("text", "é" * 200), ("binary", b"\x00\x01"), ("text", "")]
    whole = Collect()
    whole.feed(stream)
    assert whole.got == expected
    for cut in range(1, len(stream)):  # every two-chunk split
        r = Collect()
        r.feed(stream[:cut])
        r.feed(stream[cut:])
        assert r.got == expected, cut
    r = Collect()
    for b in stream:  # one byte at a time
        r.feed(bytes([b]))
    assert r.got == expected


def test_16_and_64_bit_lengths():
    mid = b"x" * 65535  # the largest 16-bit length
    big = b"y" * 70000  # needs the 64-bit length
    f16, f64 = server_frame(wf.OP_TEXT, mid), server_frame(wf.OP_TEXT, big)
    assert f16[1] == 126 and f64[1] == 127
    r = Collect()
    r.feed(f16 + f64[:5])
    r.feed(f64[5:9])  # header still incomplete
    for i in range(9, len(f64), 4096):
        r.feed(f64[i:i + 4096])
    assert r.got == [("text", mid.decode()), ("text", big.decode())]
    assert not r._tail


def test_continuation_frames_with_a_control_frame_between():
    r = Collect()
    r.feed(server_frame(wf.OP_TEXT, b'{"type":', fin=False) + server_frame(wf.OP_CONT, b'"x",', fin=False)
           + server_frame(wf.OP_PING, b"p") + server_frame(wf.OP_CONT, b'"n":1}'))
    assert r.got == [("ping", b"p"), ("text", '{"type":"x","n":1}')]
    r.feed(server_frame(wf.OP_BINARY, b"ab", fin=False) + server_frame(wf.OP_CONT, b"cd"))
    assert r.got[-1] == ("binary", b"abcd")


@pytest.mark.parametrize("frame, code", [
    (bytes((0x81, 0x81)) + b"\0\0\0\0a", 1002),  # masked server frame
    (server_frame(wf.OP_CONT, b"x"), 1002),  # continuation of nothing
    (server_frame(wf.OP_PING, b"x", fin=False), 1002),  # fragmented control frame
    (bytes((0xC1, 0x01)) + b"a", 1002),  # RSV1 without an extension
    (server_frame(wf.OP_TEXT, b"\xff"), 1007),  # not UTF-8
    (bytes((0x81, 127)) + (2**21).to_bytes(8, "big"), 1009),  # over max_size
])
def test_protocol_errors(frame, code):
    with pytest.raises(wf.WsProtocolError) as err:
        Collect().feed(frame)
    assert err.value.code == code


def test_client_frames_are_masked():
    # RFC 6455 5.7: "Hello" masked with 37 fa 21 3d, here as a pong.
    assert wf.client_frame(wf.OP_PONG, b"Hello", mask=bytes.fromhex("37fa213d")) == bytes.fromhex(
        "8a8537fa213d7f9f4d5158")
    long = bytes(range(256)) * 2
    frame = wf.client_frame(wf.OP_TEXT, long)
    assert frame[1] == 0x80 | 126 and int.from_bytes(frame[2:4], "big") == 512
    assert wf.apply_mask(frame[8:], frame[4:8]) == long


def test_close_payload():
    assert wf.parse_close(b"\x03\xf5too slow") == (1013, "too slow")
    assert wf.parse_close(b"\x03\xe8") == (1000, "")
    assert wf.parse_close(b"") == (1005, "")
    r = Collect()
    r.feed(server_frame(wf.OP_CLOSE, b"\x03\xf5too slow"))
    assert r.got == [("close", 1013, "too slow")]


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _event(seq: int) -> bytes:
    return json.dumps({"type": "event", "event": {"seq": seq, "type": "bid.accepted", "at": "2026-11-25T10:00:00Z"}},
                      separators=(",", ":")).encode()


def _open_watcher(loop):
    tally = wf._Tally(1)
    w = wf.RawWatcher(tally, 0, "127.0.0.1", 8001, "/ws/auctions/1/", loop.create_future())
    t = FakeTransport()
    w.connection_made(t)
    request = t.written.pop().decode()
    key = request.split("Sec-WebSocket-Key: ")[1].split("\r\n")[0]
    response = (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {wf.ws_accept(key)}\r\n\r\n").encode()
    return tally, w, t, response


def test_watcher_handshake_snapshot_events_ping_close():
    loop = asyncio.new_event_loop()
    try:
        tally, w, t, response = _open_watcher(loop)
        # the response, the snapshot and two events in one chunk, then a split event
        snap = server_frame(wf.OP_TEXT, b'{"type":"snapshot","seq":10}')
        w.data_received(response + snap + server_frame(wf.OP_TEXT, _event(11)) + server_frame(wf.OP_TEXT, _event(13)))
        assert w.opened.result() is w.sock and w.phase == "open"
        e12 = server_frame(wf.OP_TEXT, _event(12))
        w.data_received(e12[:7])
        w.data_received(e12[7:] + server_frame(wf.OP_TEXT, _event(12)))
        s = w.sock
        assert (s.base, s.last, s.frames, s.dups, s.ooo, s.gaps) == (10, 13, 4, 1, 1, 1)
        assert len(tally.lat[0]) == 3 and sorted(tally.per_event) == [11, 12, 13]
        assert sum(tally.per_second.values()) == 3

        w.data_received(server_frame(wf.OP_PING, b"keepalive"))
        assert unmask_client_frame(t.written.pop()) == (wf.OP_PONG, b"keepalive")

        w.data_received(server_frame(wf.OP_CLOSE, b"\x03\xf5too slow"))
        assert unmask_client_frame(t.written.pop()) == (wf.OP_CLOSE, b"\x03\xf5")
        assert t.closed and s.closed == "close 1013: too slow"
        w.connection_lost(None)  # counted once
        assert tally.closed_during == {"close 1013: too slow": 1}
    finally:
        loop.close()


def test_watcher_refused_handshake_and_lost_connection():
    loop = asyncio.new_event_loop()
    try:
        tally, w, t, _ = _open_watcher(loop)
        w.data_received(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        with pytest.raises(wf.RawConnectError, match="InvalidHandshake: HTTP/1.1 403 Forbidden"):
            w.opened.result()
        assert t.closed and w.phase == "failed"

        tally, w, t, response = _open_watcher(loop)
        w.data_received(response + server_frame(wf.OP_TEXT, b'{"type":"snapshot","seq":1}'))
        w.connection_lost(ConnectionResetError("reset"))
        assert w.sock.closed == "connection lost: reset"
        assert tally.closed_during == {"connection lost: reset": 1}
    finally:
        loop.close()


def test_import_starts_nothing():
    import subprocess
    import sys

    code = ("import threading, multiprocessing, bench.ws_fanout as m; "
            "assert threading.active_count() == 1, threading.enumerate(); "
            "assert not multiprocessing.active_children(); print(m.ROOT)")
    done = subprocess.run([sys.executable, "-c", code], cwd=wf.ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(wf.ROOT)


def test_watcher_protocol_error_closes_with_its_code():
    loop = asyncio.new_event_loop()
    try:
        tally, w, t, response = _open_watcher(loop)
        w.data_received(response + server_frame(wf.OP_TEXT, b'{"type":"snapshot","seq":1}'))
        w.data_received(server_frame(wf.OP_TEXT, b"\xff\xfe"))  # not UTF-8
        assert unmask_client_frame(t.written.pop()) == (wf.OP_CLOSE, (1007).to_bytes(2, "big"))
        assert t.closed and w.sock.closed.startswith("WsProtocolError: invalid UTF-8")
    finally:
        loop.close()


def test_a_load_client_can_send_a_large_result_after_waiting_for_the_orchestrator():
    """hot_auction's client processes wait for the orchestrator with the event loop's reader
    (uvloop leaves the fd non-blocking), then send their result, which may be megabytes: the
    send must block until the orchestrator reads it, not fail half-written."""
    import multiprocessing
    import threading

    uvloop = pytest.importorskip("uvloop")
    from bench.hot_auction import _recv

    parent, child = multiprocessing.Pipe()
    big = ("result", {"recs": [(i, 1.5, 2.5, 3.5, i, "accepted") for i in range(200_000)]})

    async def client():
        assert await _recv(child) == ("go",)
        child.send(big)  # far more than the socket buffer holds

    def orchestrator():
        parent.send(("go",))
        threading.Event().wait(0.3)  # the client is writing by now and the buffer is full
        received.append(parent.recv())

    received: list = []
    reader = threading.Thread(target=orchestrator)
    reader.start()
    uvloop.run(client())
    reader.join(10)
    assert received == [big]
