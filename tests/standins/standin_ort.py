"""The patches tests/standins/sitecustomize.py installs (also callable from a test)."""
import os
import signal
import time

COREML = "CoreMLExecutionProvider"


def behaviours() -> dict[str, str]:
    """MLComputeUnits -> "crash" | "hang", from ``LABKIT_STANDIN_COREML``."""
    out = {}
    for item in (os.environ.get("LABKIT_STANDIN_COREML") or "").split(","):
        if "=" in item:
            units, what = item.split("=", 1)
            out[units.strip()] = what.strip()
    return out


def install(setattr_=setattr) -> None:
    import onnxruntime as ort

    real_session, real_providers = ort.InferenceSession, ort.get_available_providers
    if getattr(real_session, "standin", False):
        return

    class StandInSession(real_session):
        standin = True

        def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None,
                     **kwargs):
            names = [p[0] if isinstance(p, tuple) else p for p in providers or []]
            if COREML in names:
                opts = next((p[1] for p in providers if isinstance(p, tuple) and p[0] == COREML), {})
                what = behaviours().get(str(opts.get("MLComputeUnits", "ALL")))
                if what == "crash":
                    os.kill(os.getpid(), signal.SIGSEGV)
                if what == "hang":
                    while True:
                        time.sleep(60)
                providers = [p for p, n in zip(providers, names) if n != COREML] or ["CPUExecutionProvider"]
            super().__init__(path_or_bytes, sess_options=sess_options, providers=providers, **kwargs)

    setattr_(ort, "InferenceSession", StandInSession)
    setattr_(ort, "get_available_providers", lambda: [COREML, *real_providers()])
