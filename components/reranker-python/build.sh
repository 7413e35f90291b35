#!/bin/sh
# Builds the Python reranker with componentize-py, which is installed (the
# pinned version, from PyPI) into target/step-tools/python the first time.
# Does nothing when the component is newer than every input.
set -eu
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
out=$root/target/wasm32-wasip2/release/reranker_python.wasm
tools=$root/target/step-tools/python
if [ ! -x "$tools/bin/componentize-py" ] || [ requirements.txt -nt "$tools/bin/componentize-py" ]; then
  python3 -m venv "$tools" || { echo "reranker-python: cannot create a Python venv; install python3-venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$tools/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
  touch "$tools/bin/componentize-py"
fi
# Up to date when the output is newer than every input (a missing
# input fails `find`, which rebuilds).
if [ -f "$out" ] && newer=$(find app.py wit/step.wit requirements.txt "$root/wit/types" "$root/wit/reranker" -newer "$out" -print -quit) && [ -z "$newer" ]; then
  exit 0
fi
mkdir -p "$(dirname "$out")"
"$tools/bin/componentize-py" -d wit -w step componentize app -o "$out.tmp"
mv "$out.tmp" "$out"
