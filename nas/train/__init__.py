"""Training and evaluation: the pieces of a step (``steps``), the Trainer (``trainer``), evaluation and BatchNorm
recalibration (``evaluate``), a sub-network's fine-tuning steps (``finetune``), supernet training (``supernet``),
retraining (``retrain``) and retraining many archs in parallel (``parallel``)."""
