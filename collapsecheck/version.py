"""The package version, in a module of its own so that every layer can read it without importing the package
root (which exposes the entry points of the layers above)."""
__version__ = "0.1.0"
