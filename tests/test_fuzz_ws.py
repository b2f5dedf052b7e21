"""Fuzzing the WebSocket protocol (CONTRACT.md, WebSocket): hypothesis-generated client frames
against the real consumers, through the project's ASGI app (auth and origin middleware, routing)
and the real channels-redis layer on the test Redis.

What every example checks, frame by frame:
- the consumer never crashes: no exception escapes it and nothing is logged at ERROR or with a
  traceback;
- a frame is answered as the contract says (an oracle below predicts it from the frame alone):
  a bad frame gets one `error` frame with the contract's code (echoing a string `client_bid_id`),
  or the socket is closed with the contract's code (1009 for a frame over 4096 bytes);
- every frame the server sends is a JSON object a real server can write (valid UTF-8 text);
- the socket stays usable: after each frame a `ping` still gets its `pong`;
- nothing leaks: once the socket is gone the process's hub holds no member and no group, and the
  channel layer has unsubscribed every group in Redis.

Sockets have no channel of their own here: the process's hub (realtime.hub) is the one
channel-layer consumer, subscribed to a group while at least one of its sockets is in it. "No
group leaked" therefore means: after the last socket leaves, no group subscription remains, in
the hub, in the layer, or on the Redis server (PUBSUB NUMSUB).

The hub's layer runs under a prefix of this test's own, so other test runs sharing the Redis
server (pub/sub ignores the database number) neither reach these sockets nor count in the checks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from channels.testing.websocket import WebsocketCommunicator
from django.utils.module_loading import import_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import tokens
from core.asgi import application
from realtime import consumers
from realtime import hub as hub_module
from realtime.hub import hub

pytestmark = pytest.mark.usefixtures("transactional_db")

MAX_FRAME = 4096
MAX_DB_INT = 2**63 - 1
# The error codes the contract allows on a socket: its own four, and the REST codes of a bid.
BID_CODES = {"not_found", "invalid_amount", "invalid_field", "seller_cannot_bid", "auction_not_live",
             "auction_ended", "rate_limited"}
CONTRACT_CODES = {"invalid_json", "unknown_type", "invalid_field", "not_authenticated"} | BID_CODES

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def private_layer(settings, monkeypatch):
    """The project's channel layer (realtime.layer, as configured, on the test Redis) under a
    prefix of its own, for the sockets' hub only: the process's publisher keeps the shared one."""
    config = settings.CHANNEL_LAYERS["default"]
    prefix = f"gavel-fuzz-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    layer = import_string(config["BACKEND"])(**{**config["CONFIG"], "prefix": prefix})
    monkeypatch.setattr(hub_module, "get_channel_layer", lambda alias=None: layer)
    return layer


@pytest.fixture
def runner(private_layer):
    """One event loop for every example of a test, as a web process has: its hub lives on."""
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture
def quiet_log(caplog):
    """What the application logs while a test runs; anything at ERROR or with a traceback fails."""
    caplog.set_level(logging.DEBUG)
    return caplog


@dataclass
class World:
    live: int
    scheduled: int
    token: str  # alice's: a bidder with the signup bonus


@pytest.fixture
def world(make_user, make_auction, settings):
    settings.BID_RATE_PER_SECOND = 0  # the per-user bid limiter is time-based; it has its own test below
    # In a full run, the session's real bid workers may decide the bids sent here and publish on
    # the default prefix, which these sockets do not hear; the hub's audit would then refill them
    # with events at a moment of its choosing. Answers to frames are what is fuzzed here.
    settings.WS_AUDIT_S = 3600
    alice = make_user("alice")
    make_user("sam")
    live = make_auction(seller="sam", lasts=3600, min_increment=5)
    scheduled = make_auction(seller="sam", starts_in=3600)
    return World(live=live.pk, scheduled=scheduled.pk, token=tokens.access_token_issue(user=alice)["access"])


@pytest.fixture
def unlimited_frames(monkeypatch):
    """The per-socket frame bucket is time-based; shape fuzzing must not depend on the clock."""
    monkeypatch.setattr(consumers, "FRAME_BURST", 10**9)


# --- client side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    text: str | None = None
    data: bytes | None = None  # a binary frame

    def size(self) -> int:
        return len(self.data) if self.text is None else len(self.text.encode("utf-8"))


async def connect(path: str, token: str | None = None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, path + (f"?token={token}" if token else ""))
    connected, _ = await comm.connect(timeout=5)
    assert connected, path
    first = await read(comm)
    assert first is not None and first["type"] == "snapshot", first
    return comm


async def send(comm: WebsocketCommunicator, frame: Frame) -> None:
    # send_input, not send_to: send_to refuses empty frames, which a client can send.
    if frame.text is not None:
        await comm.send_input({"type": "websocket.receive", "text": frame.text})
    else:
        await comm.send_input({"type": "websocket.receive", "bytes": frame.data})


async def read(comm: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any] | None:
    """The next frame the server sent, checked as a real server would have to write it; None
    when it closed the socket (the close code is in comm.closed_with)."""
    out = await comm.receive_output(timeout=timeout)
    if out["type"] == "websocket.close":
        comm.closed_with = out.get("code", 1000)
        return None
    assert out["type"] == "websocket.send" and out.get("bytes") is None, out
    text = out["text"]
    text.encode("utf-8")  # uvicorn encodes every text frame; a lone surrogate would fail there
    frame = json.loads(text)
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), text
    if frame["type"] == "error":
        assert set(frame) <= {"type", "code", "message", "client_bid_id"}, frame
        assert frame["code"] in CONTRACT_CODES, frame
        assert isinstance(frame["message"], str) and frame["message"], frame
    return frame


PING = Frame(text='{"type":"ping"}')


async def exchange(comm: WebsocketCommunicator, frame: Frame, expect_pongs: int) -> list[dict[str, Any]] | None:
    """Send `frame`, then a ping; return what answered `frame` apart from the `expect_pongs`
    pongs it should get (a ping's), or None if the socket was closed instead. Frames of one
    socket are handled in order, so the ping's pong comes after every answer to `frame`; a bad
    frame wrongly answered with a pong shows as an answer missing."""
    await send(comm, frame)
    await send(comm, PING)
    answers: list[dict[str, Any]] = []
    pongs = 0
    while True:
        got = await read(comm)
        if got is None:
            return None
        if got["type"] == "pong":
            pongs += 1
            if pongs > expect_pongs:
                return answers
            continue
        answers.append(got)


async def leave(comm: WebsocketCommunicator) -> None:
    await comm.disconnect(timeout=5)
    await assert_no_group_left()


async def closing(comm: WebsocketCommunicator) -> None:
    """After a failed assertion: the socket still goes, so one failure does not cascade into
    the next examples as leaked groups."""
    if not comm.future.done():
        await comm.disconnect(timeout=5)


async def assert_no_group_left() -> None:
    """After the last socket has gone: the hub has no member and no subscription, the layer no
    group, and Redis no subscriber for any group of this layer."""
    from tasks.redis_client import client

    h = hub()
    assert h.groups == {}, f"sockets still in groups: {h.groups}"
    assert h.subscribed == set(), f"hub still subscribed to {h.subscribed}"
    assert h.open_sockets == 0
    layer = h.layer._get_layer()
    assert layer.groups == {}, f"layer still routes groups {list(layer.groups)}"
    prefix = layer.prefix
    for shard in layer._shards:
        assert {c for c in shard._subscribed_to if "__group__" in c} == set(), shard._subscribed_to
    # The layer's UNSUBSCRIBE was written before group_discard returned, but another connection
    # may ask the server before it has read it: give the server a moment to catch up (bounded).
    deadline = time.monotonic() + 2
    while True:
        channels = [c if isinstance(c, str) else c.decode() for c in client().pubsub_channels(f"{prefix}__group__*")]
        if not channels or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert channels == [], f"Redis still has subscribers for {channels}"


def assert_log_clean(caplog) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, "\n".join(f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in bad)


# --- the oracle: what the contract says a frame gets ----------------------------------------

CLOSE_TOO_BIG = "close:1009"


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _client_bid_id_ok(value: Any) -> bool:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def expected(frame: Frame, *, room: bool, authed: bool, live: bool) -> set[str]:
    """The answers the contract allows for one frame: error codes, reply frame types, or a close.
    Bids are checked in the consumer's order: who, client_bid_id's type, then the REST order
    (amounts, client_bid_id, then the auction's status; alice is not its seller)."""
    if frame.size() > MAX_FRAME:
        return {CLOSE_TOO_BIG}
    if frame.text is None:
        return {"invalid_json"}  # the protocol is JSON text frames
    try:
        obj = json.loads(frame.text, parse_constant=lambda name: 1 / 0)
    except (ValueError, RecursionError, ZeroDivisionError):  # NaN and Infinity are not JSON
        return {"invalid_json"}
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return {"invalid_field"}
    kind = obj["type"]
    if kind == "ping":
        return {"pong"}
    if kind == "resume" and room:
        return {"event", "snapshot"} if _whole(obj.get("after_seq"), 0, math.inf) else {"invalid_field"}
    if kind == "bid" and room:
        if not authed:
            return {"not_authenticated"}
        amount, top, cbid = obj.get("amount"), obj.get("max_amount"), obj.get("client_bid_id")
        if cbid is not None and not isinstance(cbid, str):
            return {"invalid_field"}
        if not _whole(amount, 1, 10**12) or not (top is None or _whole(top, 1, 10**12)):
            return {"invalid_amount"}
        if top is not None and top < amount:
            return {"invalid_amount"}
        if cbid is not None and not _client_bid_id_ok(cbid):
            return {"invalid_field"}
        if not live:
            return {"auction_not_live"}
        # Queued; a repeated client_bid_id whose bid a worker has decided meanwhile also gets
        # its bid.result at once.
        return {"bid.queued", "bid.result"}
    return {"unknown_type"}


def check_answer(frame: Frame, answers: list[dict[str, Any]] | None, allowed: set[str], *, room: bool) -> None:
    if answers is None:
        assert allowed == {CLOSE_TOO_BIG}, f"closed, expected {allowed} for {frame}"
        return
    assert allowed != {CLOSE_TOO_BIG}, f"an oversized frame was answered {answers}"
    kinds = [a["code"] if a["type"] == "error" else a["type"] for a in answers]
    if allowed & CONTRACT_CODES:
        assert len(answers) == 1 and kinds[0] in allowed, f"{frame} -> {answers}, expected one of {allowed}"
        sent = _sent(frame)
        bid = room and isinstance(sent, dict) and sent.get("type") == "bid"
        echo = sent.get("client_bid_id") if bid else None
        if isinstance(echo, str):
            assert answers[0].get("client_bid_id") == echo, answers[0]
        else:
            assert "client_bid_id" not in answers[0], answers[0]
    elif allowed == {"pong"}:
        assert kinds == [], f"{frame} -> {answers}"  # its pong was counted by exchange()
    elif allowed == {"bid.queued", "bid.result"}:
        assert kinds in (["bid.queued"], ["bid.queued", "bid.result"]), f"{frame} -> {answers}"
    else:  # a resume: events in order, or a fresh snapshot
        assert set(kinds) <= allowed, f"{frame} -> {answers}"


# --- strategies ----------------------------------------------------------------------------

NASTY_NUMBERS = [2**63, 2**63 - 1, -(2**63), 2**64, 10**12, 10**12 + 1, 0, -1, 1, -0.0, 0.0, 1e308, -1e308,
                 5e-324, 0.5, 1.0, 10.0**12, True, False, 10**400]
NASTY_TEXT = ["", "\x00", "a\x00b", "\ud800", "a\udfffb", "\u202e", "\ufeff", "\x7f\x1b[2J", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "é" * 40,
              "x" * 64, "x" * 65, "ping", "bid", "resume", "null", "<script>", "'; DROP TABLE auctions_bid;--"]

texts = (st.text(st.characters(), max_size=24) | st.text(st.characters(max_codepoint=0x1F), max_size=8)
         | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3) | st.sampled_from(NASTY_TEXT))
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(NASTY_NUMBERS)
scalars = st.none() | st.booleans() | numbers | texts
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(texts, kids, max_size=4), max_leaves=12)
amounts = st.integers(1, 10**12) | st.integers(1, 2000) | numbers | json_values

types = st.sampled_from(["ping", "resume", "bid", "PING", "Ping", " ping", "snapshot", "event", "error", "pong",
                         "bid.queued", "subscribe", ""]) | texts
extras = st.dictionaries(texts.filter(lambda k: k not in ("type",)), json_values, max_size=3)


def _typed(kind: str, **fields) -> st.SearchStrategy[dict[str, Any]]:
    """A frame of that type with some of its fields (any values) and maybe extra ones."""
    return st.builds(lambda opt, extra: {**extra, **opt, "type": kind}, st.fixed_dictionaries({}, optional=fields),
                     extras)


objects = st.one_of(
    _typed("ping"),
    _typed("resume", after_seq=st.integers(0, 50) | numbers | json_values),
    _typed("bid", amount=amounts, max_amount=amounts, client_bid_id=texts | json_values),
    st.builds(lambda kind, extra: {**extra, "type": kind}, types | json_values, extras),
    json_values,
)


def _json_text(value: Any, ascii_only: bool) -> str:
    try:
        return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8").decode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate can only travel escaped, as a real client sends it
        return json.dumps(value)


def _deep(depth: int, kind: str) -> str:
    """A ping carrying `depth` nested arrays or objects: 2 * depth + 20 bytes, so up to 2038
    levels fit in a frame, well past the JSON parser's recursion limit (about 1000)."""
    opening, closing = ("[", "]") if kind == "list" else ('{"":', "}")
    return '{"type":"ping","x":' + opening * depth + ("" if kind == "list" else "0") + closing * depth + "}"


def _padded(size: int) -> str:
    """A valid ping of exactly `size` bytes of UTF-8, padded mostly with a two-byte character:
    the limit is on bytes, and this frame has far fewer characters than bytes."""
    head, tail = '{"type":"ping","pad":"', '"}'
    room = size - len(head) - len(tail)
    return head + "é" * (room // 2) + "x" * (room % 2) + tail


frames_ = st.one_of(
    st.builds(_json_text, objects, st.booleans()).map(lambda t: Frame(text=t)),
    st.text(max_size=64).map(lambda t: Frame(text=t)),  # mostly not JSON at all
    st.sampled_from(["NaN", "Infinity", '{"type":"ping","x":NaN}', '{"type":"resume","after_seq":Infinity}',
                     '{"type":"bid","amount":-Infinity}', '{"type":"ping"', '{"type":"ping"}{}', "[]", "{}",
                     '{"type":"ping"}\x00', "\ufeff{\"type\":\"ping\"}", '{"type":"resume","after_seq":1e400}',
                     '{"type":"bid","amount":' + "9" * 400 + "}", '"ping"', "null", " "]).map(lambda t: Frame(text=t)),
    st.builds(_deep, st.sampled_from([100, 998, 999, 1000, 1001, 1500, 2038, 2039]) | st.integers(1, 3000),
              st.sampled_from(["list", "object"])).map(lambda t: Frame(text=t)),
    st.integers(MAX_FRAME - 4, MAX_FRAME + 4).map(lambda n: Frame(text=_padded(n))),
    st.integers(MAX_FRAME + 1, 3 * MAX_FRAME).map(lambda n: Frame(text='{"type":"ping","pad":"' + "y" * n + '"}')),
    st.binary(max_size=64).map(lambda b: Frame(data=b)),
    st.builds(_json_text, objects, st.just(True)).map(lambda t: Frame(data=t.encode())),
    st.integers(MAX_FRAME + 1, 2 * MAX_FRAME).map(lambda n: Frame(data=b"\x00" * n)),
)


def _sent(frame: Frame) -> Any:
    try:
        return json.loads(frame.text) if frame.text is not None else None
    except (ValueError, RecursionError):
        return None


async def fuzz_one_socket(path: str, token: str | None, batch: list[Frame], *, room: bool, live: bool) -> None:
    comm = await connect(path, token)
    try:
        for frame in batch:
            allowed = expected(frame, room=room, authed=token is not None, live=live)
            answers = await exchange(comm, frame, expect_pongs=1 if allowed == {"pong"} else 0)
            check_answer(frame, answers, allowed, room=room)
            if answers is None:
                break
        else:
            # Still usable after whatever came before: a ping, and in a room a resume of the log.
            assert await exchange(comm, PING, expect_pongs=1) == []
            if room:
                replay = await exchange(comm, Frame(text='{"type":"resume","after_seq":0}'), expect_pongs=0)
                assert [f["type"] for f in replay] == ["event"] * len(replay), replay
                assert [f["event"]["seq"] for f in replay] == list(range(1, len(replay) + 1)), replay
                assert replay or not live, "a live auction has at least its auction.started"
    except BaseException:
        await closing(comm)
        raise
    await leave(comm)


# --- the fuzzers ---------------------------------------------------------------------------


def _bid(**fields) -> Frame:
    return Frame(text=json.dumps({"type": "bid", **fields}))


# Frames every run sends, whatever hypothesis draws: the edges found while writing these tests.
KNOWN = [
    *(Frame(text=_deep(depth, kind)) for depth in (999, 1000, 2038, 2039) for kind in ("list", "object")),
    Frame(text=_padded(MAX_FRAME)), Frame(text=_padded(MAX_FRAME + 1)),
    Frame(text="NaN"), Frame(text='{"type":"ping","x":NaN}'), Frame(text='{"type":"resume","after_seq":Infinity}'),
    Frame(text='{"type":"bid","amount":-Infinity}'), Frame(text=""), Frame(data=b""),
    Frame(data=b'{"type":"ping"}'), Frame(data="é".encode("latin-1")),
    Frame(text=json.dumps({"type": "resume", "after_seq": MAX_DB_INT})),
    Frame(text=json.dumps({"type": "resume", "after_seq": MAX_DB_INT + 1})),
    Frame(text=json.dumps({"type": "resume", "after_seq": 10**400})),
    Frame(text='{"type":"resume","after_seq":-0}'), Frame(text='{"type":"resume","after_seq":1e308}'),
    Frame(text=json.dumps({"type": "\ud800"})), Frame(text=json.dumps({"type": "\x00\x1b"})),
    _bid(amount=2**63), _bid(amount=1e308), _bid(amount=-0.0), _bid(amount=10**12), _bid(amount=10**12 + 1),
    _bid(amount=30, max_amount=2**63), _bid(amount=30, client_bid_id="\ud800"),
    _bid(amount=30, client_bid_id="a\x00b"), _bid(amount="30", client_bid_id="\udfff"),
    _bid(amount=30, client_bid_id="x" * 65), _bid(amount=30, client_bid_id=["x"]),
    _bid(amount=30, client_bid_id="known-\u202e\x7f"),
]


@pytest.mark.parametrize("path", ["room-live", "room-scheduled", "lobby"])
@pytest.mark.parametrize("who", ["anonymous", "bidder"])
def test_known_nasty_frames_get_the_contracts_answer_and_leak_nothing(
        path, who, world, runner, quiet_log, unlimited_frames):
    token = world.token if who == "bidder" else None
    room, live = path.startswith("room"), path == "room-live"
    url = f"/ws/auctions/{world.live if live else world.scheduled}/" if room else "/ws/lobby/"
    for frame in KNOWN:  # one socket each: an oversized frame closes its socket
        runner.run(fuzz_one_socket(url, token, [frame], room=room, live=live))
    assert_log_clean(quiet_log)


@pytest.mark.parametrize("who", ["anonymous", "bidder"])
def test_any_frame_on_a_room_socket_gets_the_contracts_answer_and_leaks_nothing(
        who, world, runner, quiet_log, unlimited_frames):
    token = world.token if who == "bidder" else None

    @FUZZ
    @given(batch=st.lists(frames_, min_size=1, max_size=5), live=st.booleans())
    def fuzz(batch, live):
        auction = world.live if live else world.scheduled
        runner.run(fuzz_one_socket(f"/ws/auctions/{auction}/", token, batch, room=True, live=live))
        assert_log_clean(quiet_log)

    fuzz()


def test_any_frame_on_a_lobby_socket_gets_the_contracts_answer_and_leaks_nothing(
        world, runner, quiet_log, unlimited_frames):
    @settings(FUZZ, max_examples=60)
    @given(batch=st.lists(frames_, min_size=1, max_size=5), authed=st.booleans())
    def fuzz(batch, authed):
        runner.run(fuzz_one_socket("/ws/lobby/", world.token if authed else None, batch, room=False, live=False))
        assert_log_clean(quiet_log)

    fuzz()


def test_a_flood_of_any_frames_is_cut_off_with_1008_after_20_rate_limited_errors(world, runner, quiet_log):
    """The per-socket bucket (40 frames, then 20 a second) answers the excess with `rate_limited`;
    the 20th within 10 s closes the socket with 1008, and nothing is sent after the close."""

    def one_answer(frame: Frame) -> bool:
        allowed = expected(frame, room=True, authed=True, live=True)
        return allowed == {"pong"} or bool(allowed & CONTRACT_CODES)

    @settings(FUZZ, max_examples=8)
    @given(kinds=st.lists(frames_.filter(one_answer), min_size=1, max_size=10))
    def fuzz(kinds):
        async def scenario():
            comm = await connect(f"/ws/auctions/{world.live}/", world.token)
            for k in range(300):
                await send(comm, kinds[k % len(kinds)])
            outs = []
            while (got := await read(comm, timeout=1)) is not None:  # a missing close fails fast
                outs.append(got)
            assert comm.closed_with == 1008
            codes = [f.get("code") for f in outs]
            assert codes.count("rate_limited") == 20 and codes[-1] == "rate_limited", codes
            # Each of these frames gets exactly one answer, so this counts the frames let through.
            assert codes.index("rate_limited") >= consumers.FRAME_BURST, "the burst was not honoured"
            assert await comm.receive_nothing(0.05), "frames after the close"
            await leave(comm)

        runner.run(scenario())
        assert_log_clean(quiet_log)

    fuzz()


def test_a_bid_flood_over_the_users_bid_limit_also_closes_the_socket(world, runner, quiet_log, unlimited_frames,
                                                                     settings):
    """Bids refused by the per-user limiter (REST and WebSocket together) are `rate_limited`
    errors too, each echoing its client_bid_id, and count towards the 1008 close."""
    settings.BID_RATE_PER_SECOND = 0.001  # practically no refill while the test runs
    settings.BID_RATE_BURST = 2

    async def scenario():
        comm = await connect(f"/ws/auctions/{world.live}/", world.token)
        for k in range(40):
            await comm.send_json_to({"type": "bid", "amount": 10 + 5 * k, "client_bid_id": f"flood-{k}"})
        outs = []
        while (got := await read(comm)) is not None:
            outs.append(got)
        assert comm.closed_with == 1008
        assert [f["type"] for f in outs[:2]] == ["bid.queued", "bid.queued"]
        limited = outs[2:]
        assert [f.get("code") for f in limited] == ["rate_limited"] * 20
        assert [f["client_bid_id"] for f in limited] == [f"flood-{k}" for k in range(2, 22)]
        await leave(comm)

    runner.run(scenario())
    assert_log_clean(quiet_log)


@pytest.mark.parametrize("auction_id", ["0", str(MAX_DB_INT), str(MAX_DB_INT + 1), "9" * 40])
def test_a_room_path_naming_no_auction_is_an_error_frame_and_4404(auction_id, runner, quiet_log, private_layer):
    async def scenario():
        comm = WebsocketCommunicator(application, f"/ws/auctions/{auction_id}/")
        assert (await comm.connect(timeout=5))[0]
        assert await read(comm) == {"type": "error", "code": "not_found", "message": "no such auction"}
        assert await read(comm) is None and comm.closed_with == 4404
        await leave(comm)

    runner.run(scenario())
    assert_log_clean(quiet_log)


def test_a_handler_that_fails_closes_its_socket_with_1011_and_leaves_its_groups(world, runner, caplog, monkeypatch):
    """The consumer's last line of defence (consumers._Base.dispatch): a bug of ours in a handler
    is logged, the client sees a 1011 close and no traceback, and the socket leaves its groups."""

    async def broken(self, frame):
        raise RuntimeError("a bug")

    monkeypatch.setattr(consumers.AuctionConsumer, "on_resume", broken)
    caplog.set_level(logging.ERROR)

    async def scenario():
        other = await connect(f"/ws/auctions/{world.live}/", world.token)
        comm = await connect(f"/ws/auctions/{world.live}/", world.token)
        await comm.send_json_to({"type": "resume", "after_seq": 0})
        assert await read(comm) is None and comm.closed_with == 1011
        await comm.disconnect(timeout=5)
        assert [len(members) for members in hub().groups.values()] == [1, 1], "only the other socket is left"
        assert await exchange(other, PING, expect_pongs=1) == [], "the other socket is unaffected"
        await leave(other)

    runner.run(scenario())
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1 and "a bug" in failures[0].exc_text
