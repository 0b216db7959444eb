"""CUDA source of ecmpi's GPU kernels, installed as the package ``ecmpi.kernels``.

Only :mod:`ecmpi._kernels` resolves these files (through importlib.resources).
"""
