"""Builds the Cython hot path in _fastpath/ into edge_proxy's compiled twins.

Each compiled module has a pure-Python twin beside its target name in edge_proxy/; the twin is the
specification and the tests run one table against both.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

# compiled module name -> Cython source
FASTPATH = {
    "edge_proxy._forward_token_c": "_fastpath/forward_token.pyx",
    "edge_proxy.metering._usage_scan_c": "_fastpath/usage_scan.pyx",
    "edge_proxy._headers_c": "_fastpath/headers.pyx",
    "edge_proxy.metering._cost_c": "_fastpath/cost.pyx",
    "edge_proxy.billing._media_scan_c": "_fastpath/media_scan.pyx",
    "edge_proxy.observability._tally_c": "_fastpath/tally.pyx",
    "edge_proxy.log_sinks._rows_c": "_fastpath/log_rows.pyx",
}

setup(
    ext_modules=cythonize(
        [Extension(name, [src], extra_compile_args=["-O3"]) for name, src in FASTPATH.items()],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
