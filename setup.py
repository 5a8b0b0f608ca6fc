"""The optional C data loop of the pickle machine (pyproject.toml holds the metadata).

`optional=True`: without a compiler the build of the extension fails quietly and the package installs with
its pure-Python loop, which gives the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "modelshield.formats.pickle._hot",
            sources=["src/modelshield/formats/pickle/_hot.c"],
            optional=True,
        )
    ]
)
