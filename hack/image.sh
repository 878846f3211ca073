#!/usr/bin/env bash
# make image: the FROM scratch image around the static binary `make build`
# made. Usage: hack/image.sh TOOL PLATFORM IMAGE VERSION. Prints the image's
# size, uncompressed (every layer and the config, as stored on a node) and
# fails when that is 15 MB or more (the design card's limit).
set -euo pipefail
tool=$1 platform=$2 image=$3 version=$4
limit=$((15 * 1000 * 1000))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$tool" in
buildah)
  # vfs + chroot: no daemon and no overlay mount; works as root in a container.
  b=(buildah --storage-driver vfs)
  "${b[@]}" bud --isolation chroot --platform "$platform" --build-arg VERSION="$version" -t "$image" .
  "${b[@]}" push "$image" "docker-archive:$tmp/image.tar:$image" >/dev/null 2>&1
  ;;
podman|docker)
  "$tool" build --platform "$platform" --build-arg VERSION="$version" -t "$image" .
  "$tool" save -o "$tmp/image.tar" "$image"
  ;;
*)
  echo "IMAGE_TOOL=$tool: want buildah, podman or docker" >&2
  exit 2
  ;;
esac

bytes=$(stat -c %s "$tmp/image.tar")
pulled=$(gzip -c "$tmp/image.tar" | wc -c)
echo "image $image ($platform): $bytes bytes uncompressed ($(awk -v b="$bytes" 'BEGIN{printf "%.2f MB", b/1e6}')), about $(awk -v b="$pulled" 'BEGIN{printf "%.2f MB", b/1e6}') gzipped"
if [ "$bytes" -ge "$limit" ]; then
  echo "image $image is $bytes bytes: at or over the 15 MB limit" >&2
  exit 1
fi
