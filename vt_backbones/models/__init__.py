"""One module per family; importing it registers the family's class."""
from .swin import SwinTransformer

__all__ = ['SwinTransformer']
