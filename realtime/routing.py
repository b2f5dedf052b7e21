from django.urls import path

from realtime import consumers

websocket_urlpatterns = [
    path("ws/auctions/<int:auction_id>/", consumers.AuctionConsumer.as_asgi()),
    path("ws/lobby/", consumers.LobbyConsumer.as_asgi()),
]
