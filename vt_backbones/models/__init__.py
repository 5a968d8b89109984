"""One module per family; importing it registers the family's class."""
from .swin import SwinTransformer
from .twins import PCPVT, SVT

__all__ = ['SwinTransformer', 'PCPVT', 'SVT']
