"""The preloaded allocation shim: its C sources, their build, its library and its logs.

:func:`placer.collectors.shim.library.shim_path` gives the ``LD_PRELOAD`` library (built from the
C sources by :mod:`placer.collectors.shim.build`); :mod:`placer.collectors.shim.log` reads what it
writes (format: ``docs/shim-log.md``; behaviour and settings: ``docs/shim.md``).
"""
