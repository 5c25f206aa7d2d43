"""Every method on the text models of the zoo (`tests/zoo_models.py`): prepare → two training
steps → finalize → compact → save → reload into a freshly built model → outputs compared with the
finalized model (1e-5). A cell either works or is refused at prepare with the method's reason —
never a crash, never a silently different model."""

from __future__ import annotations

import pytest
import zoo_models as zoo

from sparsitylab.deploy.surgery import TOLERANCE


@pytest.mark.parametrize("method", zoo.METHODS)
@pytest.mark.parametrize("name", zoo.TEXT)
def test_every_method_on_every_model(name, method, tmp_path):
    cell = zoo.run_cell(name, method, tmp_path)
    assert cell.status == zoo.expected(name, method)
    if cell.status == "works":
        assert cell.error <= TOLERANCE
        assert cell.params[1] <= cell.params[0] and cell.macs[1] <= cell.macs[0]
