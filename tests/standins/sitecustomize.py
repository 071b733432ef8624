"""Stand-ins for Apple-only execution providers at the onnxruntime API level, for the
rehearsal of stage 04 here (tests/test_isolation.py).

Put this folder on PYTHONPATH and set ``LABKIT_STANDIN_COREML`` (e.g.
``CPUAndGPU=crash,CPUAndNeuralEngine=hang``): every Python process that starts then sees
``CoreMLExecutionProvider`` among onnxruntime's providers, and an InferenceSession asked
for it with those ``MLComputeUnits`` kills its process with SIGSEGV (as a native fault
does) or never returns; other compute units run on the CPU provider. Nothing here is
imported by the lab itself.
"""
import os

from standin_ort import install

if os.environ.get("LABKIT_STANDIN_COREML") is not None:
    install()
