"""Where the contract's bids reach a baseline: POST /api/auctions/<id>/bids (bench.baselines.urls)
and the room socket's `bid` frame (apps.BaselinesConfig.ready). Each does what the product's
edge does (auth, the checks' order, the answer's shape) and hands the bid to bench.baselines.bids."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from auctions import selectors
from auctions.api import _auction_or_404, _json_object
from auctions.services import Submission
from bench.baselines import bids
from core.api import api, error_response
from core.api_users import WWW_AUTHENTICATE, user_auth
from core.errors import InvalidInput, NotAuthenticated, ServiceError
from core.ratelimit import bid_rate_check


@csrf_exempt  # Bearer tokens, no cookies: as the product's API
@require_POST
def bid_create(request: HttpRequest, auction_id: int) -> HttpResponse:
    """The baseline's answer to auctions.api.bid_create: 202 with the bid (sync: already
    decided), 200 with the original for a repeated client_bid_id, the contract's errors."""
    try:
        user = user_auth(request)
        if user is None:
            raise NotAuthenticated("authentication required: send `Authorization: Bearer <access token>`",
                                   headers=WWW_AUTHENTICATE)
        auction = _auction_or_404(auction_id)
        body = _json_object(request)
        client_bid_id = body.get("client_bid_id")
        if isinstance(client_bid_id, str) and "\x00" in client_bid_id:
            raise InvalidInput("client_bid_id must not contain NUL characters", code="invalid_field",
                               details={"field": "client_bid_id"})
        submitted = bids.bid_submit(
            auction_id=auction.pk, user=user, amount=body.get("amount"), max_amount=body.get("max_amount"),
            client_bid_id=client_bid_id, channel="rest", rate_check=lambda: bid_rate_check(user.pk),
        )
    except ServiceError as exc:
        return error_response(request, exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers)
    return api.create_response(request, selectors.bid_data(submitted.bid, viewer=user),
                               status=202 if submitted.created else 200)


class OneByOne:
    """The product's socket-intake seam (auctions.intake_batch.BidIntake.submit) without its
    group commit: each socket bid takes its own thread hop and is handled there, as a team's
    design would do it."""

    async def submit(self, submission: Submission) -> tuple[dict[str, Any], bool]:
        return await database_sync_to_async(ws_submit, thread_sensitive=False)(submission)


ONE_BY_ONE = OneByOne()


def ws_submit(s: Submission) -> tuple[dict[str, Any], bool]:
    """BidIntake.submit's answer: the bid as `bid.queued` shows it, and whether it was stored
    now (the consumer sends bid.result at once for a repeated client_bid_id whose bid was
    decided already). A new bid's bid.result is published after commit, as in the product, and
    the consumer holds it until bid.queued is out."""
    submitted = bids.bid_submit(
        auction_id=s.auction_id, user=s.user, amount=s.amount, max_amount=s.max_amount,
        client_bid_id=s.client_bid_id, channel="ws", rate_check=lambda: bid_rate_check(s.user.pk),
    )
    return selectors.bid_data(submitted.bid, viewer=s.user), submitted.created
