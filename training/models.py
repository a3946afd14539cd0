"""Dataset versions, training and evaluation runs live here (later issues)."""
