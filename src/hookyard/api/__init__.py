"""HTTP surface: the raw ASGI ingest endpoint and the REST API."""
