"""The engine (layer 1): Kokoro synthesis, from text and phonemes through ONNX Runtime sessions to streamed audio.
It may import the bottom layer only (labkit.kokoro, config, files, quality, host.machine, ...), never a layer above.
serve/ ships it: what the endpoint runs lives here, and the registries of names a config may hold.
"""
