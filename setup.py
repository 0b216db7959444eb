"""Packaging for ecmpi. Tool configuration (ruff, pytest) lives in pyproject.toml."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
for line in (HERE / "ecmpi" / "__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        version["v"] = line.split("=")[1].strip().strip('"')

TEST = [
    "pytest>=7",
    "pytest-timeout>=2.1",
    "hypothesis>=6",
    "ruff>=0.5",
    "matplotlib>=3.6",
    "pandas>=1.5",
    "scikit-learn>=1.2",
]

setup(
    name="ecmpi",
    version=version["v"],
    description="Communication-efficient distributed optimization on MPI: compressed "
    "collectives, CUDA quantization kernels, ECQ-SGD, QESGD, EC-LKatyusha, DQ-GD",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=[*find_packages(include=["ecmpi", "ecmpi.*"]), "ecmpi.kernels"],
    package_dir={"ecmpi.kernels": "kernels"},
    package_data={"ecmpi.kernels": ["*.cu", "*.cuh"]},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "h5py>=3.8",
        "numba>=0.58",
        "mpi4py>=3.1",
        "crc32c>=2.3",
    ],
    extras_require={
        "mpich": ["mpi4py>=3.1", "mpich"],
        "openmpi": ["mpi4py>=3.1", "openmpi"],
        "gpu": ["cupy-cuda12x>=12"],
        "plot": ["matplotlib>=3.6", "pandas>=1.5"],
        "data": ["scikit-learn>=1.2"],
        "test": [*TEST, "mpich"],
    },
    entry_points={"console_scripts": ["ecmpi=ecmpi.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Mathematics",
        "Topic :: System :: Distributed Computing",
    ],
)
