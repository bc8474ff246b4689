#!/usr/bin/env bash
# What the test suite needs beyond Python packages: headless Chromium (the inspector's browser tests,
# driven by Playwright through executable_path, never `playwright install`) and Node.js (the Node
# client example). Each is installed from Debian's packages when missing and we are allowed to
# (root, apt-get present, MEMORYOS_NO_INSTALL unset); otherwise this says what to install and the
# tests that need it fail with the same advice. Output goes to stderr.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v node >/dev/null 2>&1 || command -v nodejs >/dev/null 2>&1 || missing+=(nodejs)

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ -z "${MEMORYOS_NO_INSTALL:-}" && "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's ${missing[*]} for the browser and Node tests" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2
else
  echo "warning: ${missing[*]} missing; the inspector's browser tests need chromium, the Node example needs" >&2
  echo "nodejs (18+). Install them (e.g. 'sudo apt-get install ${missing[*]}'), or run this as root." >&2
fi
