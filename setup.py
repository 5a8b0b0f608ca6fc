"""The optional C accelerators (pyproject.toml holds the metadata): the pickle machine's data loop and the
GGUF vocabulary step.

`optional=True`: without a compiler the build of an extension fails quietly and the package installs with
the Python loops, which give the same results (`modelshield.core.native`).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(name, sources=[source], optional=True)
        for name, source in [
            ("modelshield.formats.pickle._hot", "src/modelshield/formats/pickle/_hot.c"),
            ("modelshield.formats.llm._gguf", "src/modelshield/formats/llm/_gguf.c"),
        ]
    ]
)
