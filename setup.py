"""The one compiled part: the keys-file lookup (edge/_keysfind.c), loaded with ctypes. Optional: without a
C compiler the install goes on, and edge/keysfile.py looks keys up in Python."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("edge._keysfind", ["edge/_keysfind.c"], optional=True)])
