"""keras_featreg.metrics."""
