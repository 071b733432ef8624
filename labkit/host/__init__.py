"""The host (layer 4): what the lab needs from the machine it runs on, and what it installs there.
It may import every layer below; only host.machine sits in the bottom layer (the engine reads it).
labkit doctor, labkit service and make setup's preflight run from here.

``machine`` (platform facts and the thread count they give: read by the engine, so it is
the one module here the lower layers may import), ``preflight`` (what must hold before
``make setup`` installs anything), ``ports`` (who listens on the endpoint's port),
``privacy`` (macOS privacy protection: folders a login agent cannot read, the
Accessibility permission Raycast needs), ``launchd`` (the endpoint as a macOS login agent:
``labkit service``) and ``doctor`` (``labkit doctor``: every check in one report).

Kept import-light: ``make setup`` runs ``python -m labkit.host.preflight`` before the
project's dependencies are installed.
"""
