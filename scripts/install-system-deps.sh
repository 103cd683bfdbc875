#!/usr/bin/env bash
# Installs the system programs the pipeline runs from Debian/Ubuntu packages, only where they are
# missing: ffmpeg and ffprobe (required), MediaConch (checks masters against the archive's policy),
# MediaInfo (technical metadata) and mkvtoolnix (mkvpropedit writes a source's HDR metadata into
# its master's Matroska Colour element). Uses sudo when not root.
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v mediaconch >/dev/null 2>&1 || missing+=(mediaconch)
command -v mediainfo >/dev/null 2>&1 || missing+=(mediainfo)
command -v mkvpropedit >/dev/null 2>&1 || missing+=(mkvtoolnix)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "cifa: please install: ${missing[*]} (no apt-get on this machine)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "cifa: installing system packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
