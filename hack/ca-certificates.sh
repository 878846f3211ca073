#!/usr/bin/env bash
# make ca-certificates: remake hack/ca-certificates.crt, the CA bundle the
# image carries at /etc/ssl/certs/ca-certificates.crt (the first file Go's
# crypto/x509 reads on Linux), so an https:// HEALTH_CHECK_ENDPOINT with a
# public certificate verifies in a FROM scratch image.
#
# The bundle is made from Debian's ca-certificates package exactly as its
# update-ca-certificates makes /etc/ssl/certs/ca-certificates.crt with the
# default configuration: every certificate in usr/share/ca-certificates/mozilla,
# in C-locale name order, each ending in a newline (checked byte for byte
# against a Debian 12 system's bundle for 20230311+deb12u1). It is committed,
# so `make image` needs no network and one commit always gives the same
# bundle; the build host's own bundle is never used (it may hold local CAs).
#
# Usage: hack/ca-certificates.sh [VERSION]   (default: the newest apt knows;
# run `apt-get update` first). Needs apt-get and dpkg-deb (Debian, Ubuntu).
# apt checks the package against the archive's signed index.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")"
version=${1:-$(apt-cache policy ca-certificates | awk '$1 == "Candidate:" {print $2}')}
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  echo "ca-certificates: apt knows no version of the package (run apt-get update)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# As root into a private directory: apt's sandbox user could not write there.
(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "ca-certificates=$version")
deb=$(echo "$tmp"/ca-certificates_*_all.deb)
dpkg-deb -x "$deb" "$tmp/root"
certs=("$tmp"/root/usr/share/ca-certificates/mozilla/*.crt)
for f in "${certs[@]}"; do sed -e '$a\' "$f"; done >ca-certificates.crt.tmp
mv ca-certificates.crt.tmp ca-certificates.crt
{
  echo "Made by hack/ca-certificates.sh (make ca-certificates); do not edit."
  echo "package ca-certificates $version (Debian), .deb sha256 $(sha256sum <"$deb" | cut -d' ' -f1)"
  echo "bundle  ${#certs[@]} certificates, sha256 $(sha256sum <ca-certificates.crt | cut -d' ' -f1)"
} >ca-certificates.txt
cat ca-certificates.txt
