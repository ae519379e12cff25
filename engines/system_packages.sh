#!/usr/bin/env bash
# Debian packages that the Python venv cannot carry, for the tests and CI:
#   chromium + chromium-driver   the browser test of `action100m view` (Playwright drives the system
#                                chromium; no browser download)
#   FFmpeg's shared libraries    torchcodec links the system FFmpeg (PyAV and decord bundle their own)
#
#   bash engines/system_packages.sh          # installs what is missing (apt-get, root); a no-op after
#
# Exit status 3: something is missing and cannot be installed here (not root, no apt-get); the tests
# that need it skip saying so, except under CI, where they fail.
set -euo pipefail

# FFmpeg 5.1, Debian 12's; torchcodec loads the build of itself made for the FFmpeg major it finds
PACKAGES=(chromium chromium-driver libavcodec59 libavformat59 libavutil57 libavfilter8 libavdevice59
    libswscale6 libswresample4)

fail() {  # fail MESSAGE [STATUS]
    echo "engines/system_packages.sh: error: $1" >&2
    exit "${2:-2}"
}

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[[ ${#missing[@]} == 0 ]] && exit 0
[[ $(id -u) == 0 ]] || fail "missing ${missing[*]}; installing them needs root (apt-get install)" 3
command -v apt-get >/dev/null || fail "missing ${missing[*]} and there is no apt-get to install them" 3
echo "system_packages: installing ${missing[*]} (apt-get)" >&2
started=$SECONDS
DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || fail "apt-get update failed" 3
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed" 3
echo "system_packages: installed in $((SECONDS - started)) s" >&2
