"""Only the optional C extension lives here; everything else is in pyproject.toml.

``connectors.dynamodb._transcode`` turns a GetRecords body into Avro in one pass. It is optional:
where it does not compile, the install still succeeds and the bridge uses the pure-Python
transcoder (connectors/dynamodb/_transcode_py.py), which gives the same bytes, only slower.
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "connectors.dynamodb._transcode",
            ["connectors/dynamodb/_transcode.c"],
            depends=["connectors/dynamodb/_nogil_time.h"],
            optional=True,
            extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
        ),
        # export files inflated without the GIL (connectors/dynamodb/export.py falls back to Python's zlib)
        Extension(
            "connectors.dynamodb._inflate",
            ["connectors/dynamodb/_inflate.c"],
            depends=["connectors/dynamodb/_nogil_time.h"],
            libraries=["z"],
            optional=True,
            extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
        ),
        # typed values' writer (connectors/dynamodb/typed/plan.py falls back to Python without it)
        Extension(
            "connectors.dynamodb.typed._typed",
            ["connectors/dynamodb/typed/_typed.c"],
            optional=True,
            extra_compile_args=[] if sys.platform == "win32" else ["-O2"],
        ),
    ]
)
