#!/usr/bin/env bash
# Make the machine ready for `make test` / `make book`: Debian packages when we are root on
# Debian/Ubuntu (Fashion-MNIST, Chromium for the browser test, npm for vendoring the book's
# offline JavaScript, g++ for the CPU kernels), then make sure the data is found.
# Without root or apt, nothing is installed here: the data falls back to a checked download,
# and the browser test skips with a reason.
set -euo pipefail
PY=${1:-.venv/bin/python}
want=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || want+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
command -v chromedriver >/dev/null 2>&1 || want+=(chromium-driver)
command -v npm >/dev/null 2>&1 || want+=(npm)
command -v g++ >/dev/null 2>&1 || want+=(g++)  # the CUDA emulation and the compiled N:M selection
if [ ${#want[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: installing Debian packages: ${want[*]}"
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null \
    || echo "setup-system: apt-get could not install ${want[*]}; continuing without them"
fi
if ! "$PY" -m sparsitylab data find >/dev/null 2>&1; then
  echo "setup-system: Fashion-MNIST not found locally; downloading with SHA-256 checks"
  "$PY" -m sparsitylab data download
fi
