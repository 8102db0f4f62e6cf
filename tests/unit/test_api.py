from support import HANG_TIMEOUT_S

import mechinterp_arith as ma


def test_every_public_name_resolves_and_is_documented():
    import importlib
    import inspect

    for name in ma.__all__:
        obj = getattr(ma, name)
        if name == "__version__":
            assert obj == importlib.import_module("mechinterp_arith.core.version").__version__
            continue
        # each public name is the object its home module defines (not a copy), with a docstring
        home = obj.__name__ if inspect.ismodule(obj) else obj.__module__
        assert home.startswith("mechinterp_arith.") and getattr(importlib.import_module(home), name, obj) is obj, name
        assert inspect.ismodule(obj) or callable(obj), name
        assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"
    assert "import_checkpoint" in dir(ma)


def test_unknown_attribute_is_an_attribute_error():
    try:
        ma.no_such_thing
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_api_reference_is_generated_from_the_current_docstrings():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "docs" / "build_api.py"
    r = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=HANG_TIMEOUT_S)
    assert r.returncode == 0, r.stderr


def test_renamed_names_still_work_with_a_deprecation_warning(monkeypatch):
    """ma.circuit, ma.patch_sweep and ma.pca_sweep (names notebooks may use) warn and call their new names."""
    import pandas as pd
    import pytest

    from mechinterp_arith.analysis import circuits, patching, pca

    for module, old, new, returned in (
        (circuits, "circuit", "circuit_heads", pd.DataFrame()),
        (patching, "patch_sweep", "patch_each_site", object.__new__(patching.PatchResult)),
        (pca, "pca_sweep", "pca_each_site", object.__new__(pca.SitePCA)),
    ):
        calls: list[tuple] = []
        # The stub returns an instance of the declared type: runtime type checks see the alias's annotation.
        monkeypatch.setattr(module, new, lambda *args, _r=returned, _c=calls, **kwargs: _c.append((args, kwargs)) or _r)
        with pytest.warns(DeprecationWarning, match=new):
            assert getattr(ma, old)(1, k=2) is returned, old
        assert calls == [((1,), {"k": 2})], old
