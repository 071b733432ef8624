"""How the lab changes the model (layer 2): conversion, quantization, reconstruction, splitting, CoreML, op audits.
It may import the engine and the bottom layer; not measure/ (its sibling), lab/, cli, host/ or serve/.
What it builds, the engine loads (labkit.engine.assets); whether it is faster, measure/ and lab/ say.
"""
