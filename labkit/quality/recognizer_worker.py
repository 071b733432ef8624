"""``python -m labkit.quality.recognizer_worker``: one recognizer decoding in a process of
its own (labkit.quality.recognizer.transcribe_all starts one per core).

Protocol on stdin/stdout: the parent sends a job as an 8-byte little-endian length and
that many bytes of 16 kHz 16-bit mono PCM; the worker answers with an 8-byte length and the
transcript in UTF-8. End of input (or a zero length) ends the worker. The native library
never writes into the protocol: the answers go to a private copy of stdout, and file
descriptor 1 is pointed at stderr.
"""
from __future__ import annotations

import os
import struct
import sys

from labkit import procs
from labkit.quality import recognizer


def main() -> int:
    procs.watch_parent()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    jobs = sys.stdin.buffer
    while True:
        head = jobs.read(8)
        if len(head) < 8:
            return 0
        size = struct.unpack("<Q", head)[0]
        if size == 0:
            return 0
        pcm = jobs.read(size)
        if len(pcm) < size:
            return 1
        text = recognizer.hypothesis(pcm).encode()
        answers.write(struct.pack("<Q", len(text)) + text)
        answers.flush()


if __name__ == "__main__":
    sys.exit(main())
