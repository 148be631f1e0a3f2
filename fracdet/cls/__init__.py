"""Classification track: timm models, training, evaluation, checkpoints."""
