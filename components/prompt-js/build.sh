#!/bin/sh
# Builds the JavaScript prompt step with componentize-qjs (QuickJS), which
# npm installs (the version package-lock.json pins) the first time.
# Does nothing when the component is newer than every input.
set -eu
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
out=$root/target/wasm32-wasip2/release/prompt_js.wasm
if [ ! -x node_modules/.bin/componentize-qjs ] || [ package-lock.json -nt node_modules/.bin/componentize-qjs ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.bin/componentize-qjs
fi
# Up to date when the output is newer than every input (a missing
# input fails `find`, which rebuilds).
if [ -f "$out" ] && newer=$(find prompt.js wit/step.wit package-lock.json "$root/wit/types" "$root/wit/prompt" -newer "$out" -print -quit) && [ -z "$newer" ]; then
  exit 0
fi
mkdir -p "$(dirname "$out")"
node_modules/.bin/componentize-qjs --wit wit --world step --js prompt.js -o "$out.tmp"
mv "$out.tmp" "$out"
