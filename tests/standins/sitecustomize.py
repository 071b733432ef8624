"""Stand-ins every Python process started with this folder on PYTHONPATH reads.

``LABKIT_STANDIN_COREML`` (e.g. ``CPUAndGPU=crash,CPUAndNeuralEngine=hang``): stand-ins for
Apple-only execution providers at the onnxruntime API level, for the rehearsal of stage 04
here (tests/test_isolation.py): the process then sees ``CoreMLExecutionProvider`` among
onnxruntime's providers, and an InferenceSession asked for it with those
``MLComputeUnits`` kills its process with SIGSEGV (as a native fault does) or never
returns; other compute units run on the CPU provider.

``LABKIT_TEST_NO_MODEL`` (set by tests/conftest.py while a test without the ``model``
marker runs): loading the model raises (tests/standins/standin_no_model.py).

Nothing here is imported by the lab itself.
"""
import os

if os.environ.get("LABKIT_STANDIN_COREML") is not None:
    from standin_ort import install

    install()
if os.environ.get("LABKIT_TEST_NO_MODEL"):
    from standin_no_model import install as install_guard

    install_guard()
