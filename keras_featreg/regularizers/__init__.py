"""keras_featreg.regularizers."""
