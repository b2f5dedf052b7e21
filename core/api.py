"""The REST API root (django-ninja). Routers live beside their domains."""

from ninja import NinjaAPI

api = NinjaAPI(title="Gavel", version="1", urls_namespace="api", docs_url="/docs", openapi_url="/openapi.json")
