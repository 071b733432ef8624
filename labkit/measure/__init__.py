"""How the lab measures (layer 2): the comparison instrument, corpora and texts, streaming, HTTP and load benches.
It may import the engine and the bottom layer; not optimize/ (its sibling), lab/, cli, host/ or serve/.
Judging audio quality is labkit.quality's (the bottom layer); measuring time and its noise is here.
"""
