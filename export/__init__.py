"""aknet_edge.export: PyTorch AK-Net to ONNX with the ``aknet`` custom-domain ops.

Lands with the export issue; this package exists now so the installed layout
(``aknet_edge.export`` from the top-level ``export/`` folder) is fixed and tested.
"""
