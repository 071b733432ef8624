"""The OpenAI-compatible streaming endpoint that ships the lab's best configuration (layer 4).
It may import only labkit.engine, kokoro, config, best_config, files, procs and host.machine:
nothing of the lab, so what ships is the engine and the configuration the journal picked.

    from serve import create_app, serve
    serve(LabConfig.load())            # uvicorn on cfg.serve.host:port (127.0.0.1:8880)

``python -m serve -s serve.port=8881`` does the same from a shell (``labkit serve`` too).
"""
from .app import create_app
from .listener import serve

__all__ = ["create_app", "serve"]
