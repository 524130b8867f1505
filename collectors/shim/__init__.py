"""The preloaded allocation shim: its C sources, their build, its library and its logs.

:func:`collectors.shim.library.shim_path` gives the ``LD_PRELOAD`` library (built from the
C sources by :mod:`collectors.shim.build`); :mod:`collectors.shim.log` reads what it
writes (format: ``docs/shim-log.md``; behaviour and settings: ``docs/shim.md``).
"""
