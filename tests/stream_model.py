"""What a client does with the stream: fold events into the snapshot it started from.
The consistency test checks that the fold equals a snapshot taken fresh afterwards."""

from __future__ import annotations

import copy
from typing import Any

STATE_FIELDS = ("status", "current_price", "leader", "min_next_bid", "bid_count", "seq", "ends_at", "reserve_met",
                "winner", "final_price")


def apply(snapshot: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    state = copy.deepcopy(snapshot)
    auction, data = state["auction"], event["data"]
    assert event["seq"] == state["seq"] + 1, f"gap: {state['seq']} -> {event['seq']}"
    state["seq"] = auction["seq"] = event["seq"]
    if event["type"] == "auction.started":
        auction.update(status="live", ends_at=data["ends_at"])
    elif event["type"] == "bid.accepted":
        for key in ("current_price", "leader", "min_next_bid", "bid_count", "ends_at", "reserve_met"):
            auction[key] = data[key]
        board = {e["username"]: e["amount"] for e in state["leaderboard"]}
        board[data["bidder"]] = max(board.get(data["bidder"], 0), data["amount"])
        ranked = sorted(board.items(), key=lambda kv: (-kv[1], kv[0] != auction["leader"]))
        state["leaderboard"] = [{"rank": i, "username": u, "amount": a} for i, (u, a) in enumerate(ranked, 1)]
    elif event["type"] == "auction.extended":
        auction["ends_at"] = data["ends_at"]
    elif event["type"] == "auction.ended":
        auction.update(status="ended", winner=data["winner"], final_price=data["final_price"],
                       reserve_met=data["reserve_met"])
    elif event["type"] == "auction.cancelled":
        auction["status"] = "cancelled"
    return state


def view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The parts of a snapshot the stream must keep true (server_time and caller fields aside)."""
    return {"auction": {k: snapshot["auction"][k] for k in STATE_FIELDS}, "leaderboard": snapshot["leaderboard"],
            "seq": snapshot["seq"]}
