"""One module per family; importing it registers the family's class."""
from .swin import SwinTransformer
from .twins import PCPVT, SVT
from .crossformer import CrossFormer
from .gg import GGTransformer
from .coat import CoaT
from .focal import FocalTransformer
from .shuffle import ShuffleTransformer

__all__ = ['SwinTransformer', 'PCPVT', 'SVT', 'GGTransformer', 'CrossFormer', 'FocalTransformer', 'CoaT',
           'ShuffleTransformer']
