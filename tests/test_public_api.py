from __future__ import annotations

import subprocess
import sys

import stellwerk


def test_all_is_sorted_and_every_name_resolves():
    assert stellwerk.__all__ == sorted(stellwerk.__all__)
    assert set(stellwerk.__all__) == set(stellwerk._EXPORTS)
    for name in stellwerk.__all__:
        assert getattr(stellwerk, name) is not None


def test_importing_the_package_loads_no_http_stack():
    code = "import sys, stellwerk.cli; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
