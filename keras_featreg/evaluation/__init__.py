"""keras_featreg.evaluation."""
