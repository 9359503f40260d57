"""keras_featreg.losses."""
