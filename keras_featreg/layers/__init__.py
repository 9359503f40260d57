"""keras_featreg.layers."""
