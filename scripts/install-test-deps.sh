#!/usr/bin/env bash
# Installs what only the tests need, from Debian/Ubuntu packages, only where it is missing:
# Chromium, in which tests/test_run_report.py opens the HTML run report headless (reads its
# rendered DOM, takes a screenshot), and a font with Chinese characters (WenQuanYi Micro Hei,
# 1.6 MB), without which the screenshot shows the films' Chinese titles as empty boxes. `make demo` needs
# neither, so they are not in install-system-deps.sh. Uses sudo when not root.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=zh family)" ]; then
    missing+=(fonts-wqy-microhei)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "cifa: the tests need: ${missing[*]} (no apt-get on this machine)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "cifa: installing test packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
