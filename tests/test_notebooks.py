"""The notebooks in notebooks/: committed without outputs, opening with the Colab/device cell, and running end to end.

The slow tests execute each notebook headless with nbclient on the kernelspec `python3`. ipykernel installs that
spec into the environment (`<venv>/share/jupyter/kernels/python3`) with `argv[0] == "python"`, which jupyter_client
replaces by `sys.executable`, so the kernel is this interpreter in a fresh venv too (no `ipykernel install`).
"""

from __future__ import annotations

import os
import pathlib
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {"01_quickstart", "02_char_gpt", "03_scaling_on_tpu", "04_vit_cifar"}
CELL_TIMEOUT_S = 900  # Per cell; each notebook takes 1-2 minutes on a busy 2-core CPU.
ids = [p.stem for p in NOTEBOOKS]


def _read(path: pathlib.Path) -> nbformat.NotebookNode:
  return nbformat.read(str(path), as_version=4)


def _parameters_index(nb: nbformat.NotebookNode) -> int:
  tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
  return tagged[0]


def test_every_notebook_is_present():
  assert {p.stem for p in NOTEBOOKS} == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_without_outputs(path):
  nb = _read(path)
  nbformat.validate(nb)
  for i, cell in enumerate(nb.cells):
    assert "execution" not in cell.metadata, f"cell {i} keeps execution timing metadata"
    if cell.cell_type == "code":
      assert cell.outputs == [], f"cell {i} has outputs; strip them before committing"
      assert cell.execution_count is None, f"cell {i} has an execution count; strip outputs before committing"
  assert "widgets" not in nb.metadata
  assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_opens_with_colab_install_and_device_cell(path):
  nb = _read(path)
  first = nb.cells[0]
  assert first.cell_type == "code"
  src = first.source
  for needle in ('"google.colab" in sys.modules', "REPO_URL", "pip", "install", "jax.devices()",
                 "jax.default_backend()"):
    assert needle in src, f"the first cell lacks {needle!r}"
  # The pip install sits inside the Colab branch only (a no-op locally).
  colab_branch = src.split('if IN_COLAB:', 1)[1].split("\nelif", 1)[0] if "if IN_COLAB:" in src else ""
  assert "pip" in colab_branch, "pip install must happen only under `if IN_COLAB:`"
  if path.stem == "03_scaling_on_tpu":  # Fake CPU devices must be requested before JAX is imported.
    assert src.index("xla_force_host_platform_device_count") < src.index("import jax")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_has_quick_and_workdir_parameters(path):
  nb = _read(path)
  src = nb.cells[_parameters_index(nb)].source
  assert "QUICK = True" in src
  assert "WORKDIR = None" in src


def test_python3_kernelspec_runs_this_interpreter():
  spec = KernelSpecManager().get_kernel_spec("python3")
  major, minor = sys.version_info[:2]
  # jupyter_client swaps these names for sys.executable when it launches the kernel.
  assert spec.argv[0] in {"python", f"python{major}", f"python{major}.{minor}", sys.executable}, spec.argv


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs_end_to_end(path, tmp_path, data_dir):
  nb = _read(path)
  workdir = tmp_path / "workdir"
  nb.cells.insert(_parameters_index(nb) + 1, nbformat.v4.new_code_cell(f"WORKDIR = {str(workdir)!r}"))
  nb.cells.append(nbformat.v4.new_code_cell(  # The kernel must be this environment's interpreter.
      f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.prefix\nassert os.listdir(WORKDIR)"))
  env = dict(os.environ, MODEL_LIB_DATA_DIR=data_dir,
             PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
  client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                          resources={"metadata": {"path": str(REPO)}})  # The kernel's cwd: the repo root.
  try:
    client.execute(env=env)
  finally:  # Keep the executed copy (outputs, tracebacks) next to the run for debugging.
    nbformat.write(nb, str(tmp_path / path.name))
