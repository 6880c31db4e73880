#!/usr/bin/env bash
# Unpack Jane Austen's novels from Debian's r-cran-janeaustenr into the elastic-lm cache, without R.
# Idempotent: does nothing when the unpacked package is already there.
set -euo pipefail
cache="${ELASTIC_LM_CACHE:-$HOME/.cache/elastic-lm}"
target="$cache/janeaustenr"
if [ -f "$target/.done" ]; then exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download r-cran-janeaustenr >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download r-cran-janeaustenr >/dev/null 2>&1 || {
    echo "could not download the Debian package r-cran-janeaustenr (apt-get download failed)" >&2
    exit 1
  }
fi
mkdir -p "$work/unpacked"
dpkg-deb -x ./r-cran-janeaustenr_*.deb "$work/unpacked"
rm -rf "$target.tmp" && mkdir -p "$cache" && mv "$work/unpacked" "$target.tmp"
touch "$target.tmp/.done"
rm -rf "$target" && mv "$target.tmp" "$target"
echo "Austen corpus unpacked into $target"
