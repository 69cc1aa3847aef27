"""Does the supernet rank archs as training them alone does? Which archs a check trains (``arch_sets``), the
check itself (``check``), its statistics (``stats``) and retraining a search's front to compare (``front``)."""
