"""Build script. Pure-Python install by default; the CUDA C++ extension is added by the CUDA build logic."""
from setuptools import setup

setup()
