"""Only for the optional C extension; everything else is in pyproject.toml.

``cdcsync.source._pgtuple`` speeds up the stream decoder (bench/README.md). ``optional=True``:
without a C compiler or Python headers the build goes on and the pure-Python parser is used.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("cdcsync.source._pgtuple", ["cdcsync/source/_pgtuple.c"], optional=True)])
