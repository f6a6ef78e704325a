"""aknet_edge.calibration: INT8 calibration data and Q/DQ models.

Lands with the build issue; the package exists now so the installed layout is
fixed and tested.
"""
