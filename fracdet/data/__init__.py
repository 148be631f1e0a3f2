"""The data layer: one annotation model, image I/O, readers, writers, splits and conversion."""
