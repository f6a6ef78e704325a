"""aknet_edge.runtime: live camera recognition. Imports neither torch nor TensorRT.

Lands with the runtime issue; the package exists now so the installed layout
and the no-torch rule are fixed and tested from the start.
"""
