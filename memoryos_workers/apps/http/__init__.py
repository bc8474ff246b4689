"""The HTTP API (`memoryos serve`): publish and retrieve from any language, the memory inspector at /ui,
Prometheus metrics at /metrics. `app.create_app()` builds it; `server.serve()` runs it on uvicorn."""
