"""The OpenAI-compatible streaming endpoint that ships the lab's best configuration.

    from serve import create_app, serve
    serve(LabConfig.load())            # uvicorn on cfg.serve.host:port (127.0.0.1:8880)

``python -m serve -s serve.port=8881`` does the same from a shell (``labkit serve`` too).
"""
from .app import create_app
from .listener import serve

__all__ = ["create_app", "serve"]
