#!/usr/bin/env bash
# Vendor the JavaScript the HTML book needs to render offline (REFERENCE.md §3.2): MathJax 3,
# require.js and the ipywidgets HTML manager. Each package is fetched from the npm registry with
# `npm pack` (the tarball only, no dependency tree) at the exact version pinned in
# scripts/vendor/package.json, and unpacked into book/_vendor/ (gitignored). book/_ext/offline_assets.py
# serves that folder as static files without letting Sphinx inject every .js in it into every page.
#
# Usage: bash scripts/vendor_assets.sh [DEST]   (DEST defaults to book/_vendor)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
manifest=$root/scripts/vendor/package.json
dest=${1:-$root/book/_vendor}

if ! command -v npm >/dev/null 2>&1; then
  echo "vendor_assets: npm is required to fetch MathJax and the widget JavaScript from the npm registry" >&2
  echo "vendor_assets: install Node.js with npm (Debian/Ubuntu: apt-get install npm), then rerun" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
read -r -a specs < <(node -e '
  const deps = require(process.argv[1]).dependencies;
  console.log(Object.entries(deps).map(([name, version]) => `${name}@${version}`).join(" "));' "$manifest")
echo "vendor_assets: fetching ${specs[*]}"
(cd "$tmp" && npm pack --silent "${specs[@]}" >/dev/null)

unpack() {  # unpack TARBALL into $tmp/NAME, dropping the leading package/ folder
  mkdir -p "$tmp/$2" && tar -xzf "$tmp"/$1 -C "$tmp/$2" --strip-components=1
}
unpack "mathjax-*.tgz" mathjax
unpack "requirejs-*.tgz" requirejs
unpack "jupyter-widgets-html-manager-*.tgz" html-manager

out=$tmp/out
mkdir -p "$out/mathjax" "$out/html-manager"
cp -r "$tmp/mathjax/es5" "$tmp/mathjax/LICENSE" "$out/mathjax/"
cp "$tmp/requirejs/require.js" "$out/require.js"
# embed-amd.js plus the font files its bundled CSS refers to (resolved next to the script).
find "$tmp/html-manager/dist" -maxdepth 1 -type f \
  \( -name embed-amd.js -o -name '*.woff' -o -name '*.woff2' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
  -exec cp {} "$out/html-manager/" \;
printf '%s\n' "${specs[@]}" > "$out/VERSIONS"

for need in mathjax/es5/tex-mml-chtml.js require.js html-manager/embed-amd.js; do
  [ -s "$out/$need" ] || { echo "vendor_assets: $need missing after unpacking" >&2; exit 1; }
done
rm -rf "$dest.new" && mkdir -p "$(dirname "$dest")" && mv "$out" "$dest.new"
rm -rf "$dest" && mv "$dest.new" "$dest"
echo "vendor_assets: wrote $(du -sh "$dest" | cut -f1) to $dest"
