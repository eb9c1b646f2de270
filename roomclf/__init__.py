"""roomclf: room classes and attribute tags for real-estate listing photos."""
__version__ = "0.1.0"
