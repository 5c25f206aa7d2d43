#!/usr/bin/env bash
# Keep the book's execution cache honest: jupyter-cache re-runs a chapter only when its code cells
# change, but a chapter's outputs also depend on the library, the recorded data and the pinned
# versions. This script hashes those inputs and empties the cache of a build folder when the hash
# differs from the one the cache was built with (or when FORCE=1).
#   usage: scripts/book_cache.sh BUILD_FOLDER   (e.g. _build, or _build_quick/_build)
set -euo pipefail
build="${1:?usage: book_cache.sh BUILD_FOLDER}"
cache="$build/.jupyter_cache"
inputs="sparsitylab kernels data requirements pyproject.toml"
files=$(git ls-files $inputs 2>/dev/null || true)
[[ -n "$files" ]] || files=$(find $inputs -type f -not -path '*/__pycache__/*' | sort)
key=$( (echo "$files"; cat $files) | sha256sum | cut -d' ' -f1)
stamp="$build/.jupyter_cache.key"
if [[ "${FORCE:-0}" == 1 || ! -f "$stamp" || "$(cat "$stamp")" != "$key" ]]; then
  rm -rf "$cache"
  echo "book cache: empty (inputs changed or FORCE=1): every chapter will be executed"
else
  echo "book cache: kept (library, data and versions unchanged): only changed chapters run"
fi
mkdir -p "$build"
echo "$key" > "$stamp"
