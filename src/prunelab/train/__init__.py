"""Training: the fit and fine-tune loop, evaluation, checkpoints, augmentation of batches."""
