"""Masked-autoencoder pretraining on radiographs: Hugging Face ViT-MAE in pixel space, its training,
reconstruction figures, and the adapted encoder exported for timm classifiers.

Importing this package is cheap; transformers is imported by the functions that need it.
"""
