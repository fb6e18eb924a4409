"""Graph neural networks of the study (DGL)."""
