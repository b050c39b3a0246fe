#!/usr/bin/env bash
# Debian's headless Chromium for the browser tests. Idempotent: does nothing when it is already there.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: not root or no apt-get; browser tests will be skipped" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
timeout 300 apt-get update -q >/dev/null 2>&1 || true
timeout 600 apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 \
  || { echo "ensure_chromium: apt-get install chromium failed; browser tests will be skipped" >&2; exit 1; }
