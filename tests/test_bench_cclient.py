"""The benchmark's C WebSocket client (bench/wsclient.c, ws_fanout --client c): compiled here and
run, through the orchestrator's own CClientProcess, against tiny scripted servers on 127.0.0.1
that split and coalesce frames on purpose. No Redis, no database."""

from __future__ import annotations

import base64
import socket
import threading
import time
from array import array
from datetime import UTC, datetime, timedelta

import pytest

from bench import ws_fanout as wf
from core.timefmt import iso
from realtime import frames
from tests.wsframes import server_frame

CC = wf.find_c_compiler()
GAP_S = 0.02  # between scripted chunks, so that the client reads them separately


@pytest.fixture(autouse=True)
def _clean_gavel_keys():
    """Overrides conftest's autouse Redis wipe: nothing here touches Redis."""
    yield


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler (gcc or cc) on PATH, so bench/wsclient.c cannot be built")
    return wf.build_c_client(tmp_path_factory.mktemp("wsclient"), CC)




def text(obj) -> bytes:
    return server_frame(wf.OP_TEXT, frames.encode(obj).encode())


class Peer:
    """The server side of one accepted connection, with blocking helpers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.request = ""

    def read_request(self) -> str:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            assert chunk, "client closed during its request"
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.request = head.decode()
        return self.request.split("Sec-WebSocket-Key: ")[1].split("\r\n")[0]

    def accept(self, key: str) -> bytes:
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + wf.ws_accept(key).encode() + b"\r\n\r\n")

    def send_chunks(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.sock.sendall(chunk)
            time.sleep(GAP_S)

    def read_client_frame(self) -> dict:
        """One client frame: its raw bytes and the unmasked payload."""
        while True:
            if len(self.buf) >= 2:
                n = self.buf[1] & 0x7F
                assert n < 126, "the client only sends control frames"
                size = 2 + (4 if self.buf[1] & 0x80 else 0) + n
                if len(self.buf) >= size:
                    raw, self.buf = self.buf[:size], self.buf[size:]
                    masked = bool(raw[1] & 0x80)
                    body = raw[6:] if masked else raw[2:]
                    return {"fin": bool(raw[0] & 0x80), "opcode": raw[0] & 0x0F, "masked": masked,
                            "wire": body, "payload": wf.apply_mask(body, raw[2:6]) if masked else body}
            chunk = self.sock.recv(4096)
            assert chunk, "client closed before sending a frame"
            self.buf += chunk

    def read_eof(self) -> bool:
        try:
            return self.sock.recv(4096) == b""
        except OSError:
            return True


class ScriptedServer:
    """Listens on 127.0.0.1; each accepted connection runs handler(peer, record) in a thread and
    the records are kept in `records` (a handler's assertion error is kept under "error")."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.records: list[dict] = []
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            record: dict = {}
            self.records.append(record)
            t = threading.Thread(target=self._run, args=(Peer(sock), record), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, peer: Peer, record: dict) -> None:
        try:
            self.handler(peer, record)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            record["error"] = repr(exc)
        finally:
            peer.sock.close()

    def url(self, path: str = "/ws/auctions/7/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def finish(self) -> list[dict]:
        for t in list(self.threads):
            t.join(5)
        self.lsock.close()
        assert not [r["error"] for r in self.records if "error" in r]
        return self.records


NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2)
# `at` as core.timefmt.iso writes it (milliseconds, Z), and the other shapes the parser accepts
AT = {
    10: iso(NOW),  # already in the snapshot: a duplicate
    11: iso(NOW + timedelta(milliseconds=123)),
    12: (NOW + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    13: (NOW + timedelta(microseconds=123456)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    14: (NOW + timedelta(milliseconds=500)).strftime("%Y-%m-%dT%H:%M:%S.5Z"),
    15: (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.250+01:00"),
}


def at_epoch(seq: int) -> float:
    return datetime.fromisoformat(AT[seq].replace("Z", "+00:00")).timestamp()


def event(seq: int, pad: int = 0) -> bytes:
    data = {"amount": 100 + seq, "note": "x" * pad}
    return text({"type": "event", "event": {"seq": seq, "type": "bid.accepted", "at": AT[seq], "data": data}})


# the snapshot's shape (realtime.snapshots.auction_snapshot): the auction carries its own "seq";
# here it differs from the top-level one, which comes last and is the base
SNAPSHOT = text({"type": "snapshot", "auction": {"id": 7, "title": "Lot \"seq\":5", "seq": 99},
                 "leaderboard": [{"rank": 1, "username": "a", "amount": 110}], "seq": 10,
                 "server_time": iso(NOW)})


def good_script(peer: Peer, rec: dict) -> None:
    key = peer.read_request()
    rec["key"] = key
    e11, e12, e13 = event(11), event(12), event(13)
    e14 = event(14, pad=300)  # 16-bit length
    assert e14[1] == 126
    big = text({"type": "error", "code": "x", "message": "y" * 70000})  # 64-bit length, ignored
    assert big[1] == 127
    e15 = frames.encode({"type": "event", "event": {"seq": 15, "type": "bid.accepted", "at": AT[15],
                                                    "data": {}}}).encode()
    peer.send_chunks(
        peer.accept(key) + SNAPSHOT + e11[:3],  # response, snapshot and a bit of a frame together
        e11[3:] + e13 + e12[:1],  # gap: 13 after 11
        e12[1:2],  # a header split between its two bytes
        e12[2:] + e12 + event(10),  # out of order 12, then a duplicate 12 and one already in the snapshot
        text({"type": "pong", "server_time": iso(NOW)}) + e14[:3],  # ignored; 16-bit length split inside
        e14[3:200],
        e14[200:],
        # a fragmented event with a ping between its fragments
        server_frame(wf.OP_TEXT, e15[:20], fin=False) + server_frame(wf.OP_PING, b"mid"),
        server_frame(wf.OP_CONT, e15[20:40], fin=False),
        server_frame(wf.OP_CONT, e15[40:]) + big[:5],
        big[5:40000],
        big[40000:] + server_frame(wf.OP_PING, b"keepalive"),
    )
    rec["pongs"] = [peer.read_client_frame(), peer.read_client_frame()]
    peer.sock.sendall(server_frame(wf.OP_CLOSE, (1013).to_bytes(2, "big") + b"too slow"))
    rec["close"] = peer.read_client_frame()
    rec["eof"] = peer.read_eof()


def refuse(peer: Peer, rec: dict) -> None:
    peer.read_request()
    peer.sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    rec["refused"] = True


def run_client(exe, tmp_path, urls: list[str], watchers: int, final: int, drain: float = 10.0, batch_us: int = 200):
    cfg = {"clients": 1, "watchers": watchers, "concurrency": 10, "connect_timeout": 10, "urls": urls,
           "c_batch_us": batch_us}
    c = wf.CClientProcess(exe, 0, cfg, tmp_path)
    try:
        assert c.poll(10), "no 'connected' line"
        kind, connected = c.recv()
        assert kind == "connected", connected
        t0 = time.monotonic()
        c.send(("final", final, drain))
        assert c.poll(drain + 5), "no 'result' line"
        kind, result = c.recv()
        assert kind == "result", result
        waited = time.monotonic() - t0
        c.send(("exit",))
        c.join(5)
        assert c.proc.returncode == 0
    finally:
        c.kill()
        c.join(5)
    return connected, result, waited


@pytest.mark.parametrize("batch_us", [0, 200])
def test_c_client_counts_split_coalesced_frames_pings_and_close(exe, tmp_path, batch_us):
    good, bad = ScriptedServer(good_script), ScriptedServer(refuse)
    # sockets 0 and 2 go to node 0 (the script), socket 1 to node 1 (refused)
    connected, result, waited = run_client(exe, tmp_path, [good.url(), bad.url()], watchers=3, final=16,
                                           batch_us=batch_us)
    records = good.finish()
    assert bad.finish() == [{"refused": True}]

    assert connected["ok"] == 2 and connected["failed"] == 1
    assert connected["errors"] == {"InvalidHandshake: HTTP/1.1 403 Forbidden": 1}
    assert connected["per_node"] == {"0": 2}
    assert connected["loop"] == f"epoll (C), batch {batch_us} us"
    assert all(x is not None and 0 <= x < 10000 for x in connected["handshake_ms"])
    assert connected["connect_cpu_s"] >= 0

    # per socket: base 10 (the last "seq"), events 11, 13, 12, 12, 10, 14, 15; final 16 never comes,
    # so the drain ends only because both sockets were closed
    assert waited < 5
    assert {k: result[k] for k in ("expected", "received", "frames", "dups", "ooo", "gaps",
                                   "sockets_incomplete")} == {
        "expected": 2 * 6, "received": 2 * 5, "frames": 2 * 7, "dups": 2 * 2, "ooo": 2 * 1, "gaps": 2 * 1,
        "sockets_incomplete": 2}
    assert result["closed"] == {"close 1013: too slow": 2}
    assert result["per_node"] == {"0": {"sockets": 2, "expected": 12, "received": 10},
                                  "1": {"sockets": 0, "expected": 0, "received": 0}}
    assert sorted(result["per_event"]) == [11, 12, 13, 14, 15]  # 10 is not counted
    for seq, (count, first, last, at) in result["per_event"].items():
        assert count == 2
        assert at == pytest.approx(at_epoch(seq), abs=1e-6), seq
        # NOW is fixed when the module is imported, maybe minutes before this test runs
        assert first <= last and 0 < first - at < time.time() - NOW.timestamp() + 60
    lat0, lat1 = array("d"), array("d")
    lat0.frombytes(result["lat"]["0"])
    lat1.frombytes(result["lat"]["1"])
    assert len(lat0) == 10 and len(lat1) == 0
    lo = min((f - a) * 1000 for _, f, _, a in result["per_event"].values())
    hi = max((la - a) * 1000 for _, _, la, a in result["per_event"].values())
    assert all(lo - 1e-3 <= x <= hi + 1e-3 for x in lat0)
    # the delivery timeline counts the same frames, in the seconds they arrived
    assert sum(result["per_second"].values()) == 10
    assert all(abs(sec - time.time()) < 60 for sec in result["per_second"])
    assert result["cpu_s"] >= connected["connect_cpu_s"]
    assert abs(result["done_wall"] - time.time()) < 30

    assert len(records) == 2
    for rec in records:
        assert len(base64.b64decode(rec["key"])) == 16
        for pong, payload in zip(rec["pongs"], (b"mid", b"keepalive"), strict=True):
            assert pong["fin"] and pong["opcode"] == wf.OP_PONG and pong["masked"]
            assert pong["payload"] == payload and pong["wire"] != payload
        close = rec["close"]
        assert close["fin"] and close["opcode"] == wf.OP_CLOSE and close["masked"]
        assert close["payload"] == (1013).to_bytes(2, "big")
        assert rec["eof"]
    assert records[0]["key"] != records[1]["key"]


def test_c_client_request_line_and_headers(exe, tmp_path):
    seen = {}

    def script(peer: Peer, rec: dict) -> None:
        key = peer.read_request()
        seen["request"] = peer.request
        peer.send_chunks(peer.accept(key) + SNAPSHOT + event(11))
        peer.sock.sendall(server_frame(wf.OP_CLOSE, b""))  # no status: echoed without one
        rec["close"] = peer.read_client_frame()

    srv = ScriptedServer(script)
    # final 12 never comes: the drain ends with the close
    connected, result, _ = run_client(exe, tmp_path, [srv.url("/ws/auctions/7/?x=1")], watchers=1, final=12)
    (rec,) = srv.finish()
    lines = seen["request"].split("\r\n")
    assert lines[0] == "GET /ws/auctions/7/?x=1 HTTP/1.1"
    keys = [line for line in lines if line.startswith("Sec-WebSocket-Key: ")]
    assert len(keys) == 1
    assert sorted(lines[1:]) == sorted([f"Host: 127.0.0.1:{srv.port}", "Upgrade: websocket", "Connection: Upgrade",
                                        "Sec-WebSocket-Version: 13", keys[0]])
    assert connected["ok"] == 1 and result["received"] == 1 and result["expected"] == 2
    assert rec["close"]["opcode"] == wf.OP_CLOSE and rec["close"]["masked"] and rec["close"]["payload"] == b""
    assert result["closed"] == {"close 1005: ": 1}


def test_c_client_failures(exe, tmp_path):
    """A masked server frame (protocol error, answered with close 1002), a wrong accept key, an
    abrupt end after one event, and a port nobody listens on."""

    def masked(peer: Peer, rec: dict) -> None:
        key = peer.read_request()
        peer.send_chunks(peer.accept(key) + SNAPSHOT)
        peer.sock.sendall(bytes((0x81, 0x81)) + b"\0\0\0\0a")
        rec["close"] = peer.read_client_frame()
        rec["eof"] = peer.read_eof()

    def bad_accept(peer: Peer, rec: dict) -> None:
        peer.read_request()
        peer.sock.sendall(peer.accept("not-the-key") + SNAPSHOT)

    def vanish(peer: Peer, rec: dict) -> None:
        key = peer.read_request()
        peer.send_chunks(peer.accept(key) + SNAPSHOT + event(11))

    servers = [ScriptedServer(h) for h in (masked, bad_accept, vanish)]
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{unused.getsockname()[1]}/ws/auctions/7/"
        connected, result, waited = run_client(exe, tmp_path, [s.url() for s in servers] + [dead], watchers=4,
                                               final=12)
    (rec_masked,), _, _ = (s.finish() for s in servers)
    assert connected["ok"] == 2 and connected["failed"] == 2
    assert connected["per_node"] == {"0": 1, "2": 1}
    errors = connected["errors"]
    assert len(errors) == 2 and set(errors.values()) == {1}, errors
    assert any(e.startswith("InvalidHandshake: HTTP/1.1 101 Switching Protocols: Sec-WebSocket-Accept")
               and e.endswith("does not match the key") for e in errors)
    assert any(e.startswith("ConnectionRefusedError: [Errno 111]") for e in errors)
    assert result["closed"] == {"WsProtocolError: masked frame from the server": 1, "connection lost": 1}
    assert (result["expected"], result["received"], result["sockets_incomplete"]) == (4, 1, 2)
    assert waited < 5
    assert rec_masked["close"]["payload"] == (1002).to_bytes(2, "big") and rec_masked["eof"]


def test_default_client_is_c_with_a_compiler_else_raw(monkeypatch, capsys):
    monkeypatch.setattr(wf, "find_c_compiler", lambda: "/usr/bin/gcc")
    bench = wf.Bench(wf.parse_args([]))
    bench.resolve_client()
    assert bench.args.client == "c" and bench.results["args"]["client"] == "c"

    monkeypatch.setattr(wf, "find_c_compiler", lambda: None)
    bench = wf.Bench(wf.parse_args([]))
    bench.resolve_client()
    assert bench.args.client == "raw" and bench.results["args"]["client"] == "raw"
    assert "no C compiler (gcc or cc) on PATH" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--client c needs gcc or cc"):
        wf.Bench(wf.parse_args(["--client", "c"])).resolve_client()
    bench = wf.Bench(wf.parse_args(["--client", "websockets"]))
    bench.resolve_client()
    assert bench.args.client == "websockets"


def test_a_client_that_does_not_build_fails_with_the_compiler_output(monkeypatch, tmp_path):
    if CC is None:
        pytest.skip("no C compiler (gcc or cc) on PATH")
    broken = tmp_path / "wsclient.c"
    broken.write_text("int main(void) { return undefined_thing; }\n")
    monkeypatch.setattr(wf, "C_CLIENT_SRC", broken)
    with pytest.raises(SystemExit, match="undefined_thing"):
        wf.build_c_client(tmp_path, CC)
