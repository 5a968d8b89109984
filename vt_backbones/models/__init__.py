"""One module per family; importing it registers the family's classes in `vt_backbones.registry.MODELS`.

Every module of this package is imported (in name order), so a new family is one new file here.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')
