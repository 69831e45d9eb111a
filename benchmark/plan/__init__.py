"""The trial plan: the suite expanded into trials with stable ids (stage 2)."""
