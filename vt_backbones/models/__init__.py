"""One module per family; importing it registers the family's class."""
from .swin import SwinTransformer
from .twins import PCPVT, SVT
from .shuffle import ShuffleTransformer
from .coat import CoaT
from .crossformer import CrossFormer
from .gg import GGTransformer
from .focal import FocalTransformer

__all__ = ['SwinTransformer', 'PCPVT', 'SVT', 'ShuffleTransformer', 'CoaT', 'CrossFormer', 'GGTransformer',
           'FocalTransformer']
