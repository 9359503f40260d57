"""keras_featreg.data."""
