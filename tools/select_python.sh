# Sourced by the launchers (torchrun.sh, demo.sh): sets PYTHON to the interpreter that runs the tools.
#   1. PYTHON as given (e.g. PYTHON=/path/to/cuda-env/bin/python);
#   2. else the active environment's `python` (or `python3`) when it has torch (an activated venv or conda env);
#   3. else the project's environment made by `make install`: $VENV/bin/python (VENV defaults to .venv, relative
#      to the repository root), so a fresh shell runs the tools without activating anything.
if [ -z "${PYTHON:-}" ]; then
  _vtb_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  _vtb_venv=${VENV:-.venv}
  case $_vtb_venv in /*) ;; *) _vtb_venv=$_vtb_root/$_vtb_venv ;; esac
  for _vtb_candidate in python python3; do
    # find_spec only looks the package up: far cheaper than importing torch.
    if command -v "$_vtb_candidate" >/dev/null 2>&1 && \
       "$_vtb_candidate" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' \
         2>/dev/null; then
      PYTHON=$_vtb_candidate
      break
    fi
  done
  if [ -z "${PYTHON:-}" ]; then
    if [ -x "$_vtb_venv/bin/python" ]; then
      PYTHON=$_vtb_venv/bin/python
    else
      echo "error: no Python with torch: the active python has none and $_vtb_venv/bin/python does not exist;" \
           "run 'make install' (creates .venv) or set PYTHON=/path/to/python" >&2
      exit 1
    fi
  fi
  unset _vtb_root _vtb_venv _vtb_candidate
fi
export PYTHON
