"""The lab's stages (layer 3): stage modules sNN_* (labkit.lab.protocol), records, batches, the journal, selection.
It may import measure/, optimize/, the engine and the bottom layer; not cli, host/ (but host.machine) or serve/.
Notebooks stay thin: each hands its work to one stage module here.
"""
