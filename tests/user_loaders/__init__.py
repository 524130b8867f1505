"""Loaders written the way a user writes them (not placer's examples): ``placer tune`` takes
their ``module:function`` as it is."""
