"""Background Matting and its excited, recursive version (seed 000). Registry classes in model.py."""
