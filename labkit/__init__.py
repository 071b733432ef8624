"""Kokoro Lab: an ONNX Runtime optimization lab for Kokoro-82M, in layers that import downwards only.
Layer 0 is this package's top-level modules (kokoro, config, files, tables, ...), quality/ and host.machine;
above it engine/ (1), measure/ and optimize/ (2, siblings), lab/ (3), cli and host/ (4) (tests/test_layout.py).
"""
