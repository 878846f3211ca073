#!/usr/bin/env bash
# make image / make image-push.
#
#   hack/image.sh build TOOL IMAGE VERSION REVISION EPOCH PLATFORM...
#   hack/image.sh push TOOL IMAGE DESTINATION
#
# build: for each PLATFORM (linux/ARCH) cross-compiles the static binary
# (`make build`), builds the FROM scratch image around it and the CA bundle
# hack/ca-certificates.crt (no RUN step, so no emulation), and checks the
# image: under 15 MB uncompressed (every layer and the config, as stored on a
# node; the design card's limit), the bundle byte for byte at
# /etc/ssl/certs/ca-certificates.crt, the binary static and for ARCH, the
# config's platform and version label, and on the build host's own
# architecture that the binary prints VERSION. With buildah or podman the
# images are assembled into one OCI index (manifest list) named IMAGE,
# replacing any list of that name; docker has no local index, so it tags each
# image IMAGE-ARCH. EPOCH (seconds) is the images' created time and their
# files' time: one commit and toolchain give the same digests.
#
# push: the index and every image in it to DESTINATION (a transport:name such
# as docker://registry.example.com/forge-manager:0.1.0, or oci:DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((15 * 1000 * 1000))
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

die() {
  echo "$*" >&2
  exit 1
}

tool_cmd() {
  case "$1" in
  buildah) b=(buildah --storage-driver vfs) ;; # vfs + chroot: no daemon, no overlay mount; works as root in a container
  podman | docker) b=("$1") ;;
  *)
    echo "IMAGE_TOOL=$1: want buildah, podman or docker" >&2
    exit 2
    ;;
  esac
}

push() {
  local tool=$1 image=$2 dest=$3
  tool_cmd "$tool"
  # A bare name would go to Docker Hub's library/ namespace: never meant.
  if [[ "$dest" == docker://* && "${dest#docker://}" != */* ]]; then
    echo "IMAGE_DEST=$dest names no registry: want e.g. make image-push IMAGE=registry.example.com/forge-manager:0.1.0" >&2
    exit 2
  fi
  case "$tool" in
  buildah | podman)
    "${b[@]}" manifest push --all --format oci --digestfile "$tmp/digest" "$image" "$dest"
    echo "pushed $image to $dest: index $(cat "$tmp/digest")"
    ;;
  docker)
    echo "IMAGE_TOOL=docker keeps no local index: push with IMAGE_TOOL=buildah or podman," \
      "or push each $image-ARCH and join them with docker manifest create" >&2
    exit 2
    ;;
  esac
}

build() {
  local tool=$1 image=$2 version=$3 revision=$4 epoch=$5
  shift 5
  tool_cmd "$tool"
  local platform
  for platform in "$@"; do
    if [[ ! "$platform" =~ ^linux/[a-z0-9]+$ ]]; then
      echo "IMAGE_PLATFORMS: $platform: want linux/ARCH (no variant), e.g. linux/arm64" >&2
      exit 2
    fi
  done
  if [ "$tool" != docker ]; then
    # --manifest adds to a list of that name: start from none, so a rebuild
    # does not keep the last build's images in the index.
    if "${b[@]}" manifest exists "$image" 2>/dev/null; then
      "${b[@]}" manifest rm "$image" >/dev/null
    elif "${b[@]}" inspect --type image "$image" >/dev/null 2>&1; then
      "${b[@]}" rmi "$image" >/dev/null # a single-platform image of that name, from before the index
    fi
  fi
  local arch ctx args
  for platform in "$@"; do
    arch=${platform#linux/}
    # The build context: this platform's binary and the bundle, nothing else.
    ctx=$tmp/$arch
    mkdir -p "$ctx/hack"
    make --no-print-directory build PLATFORM="$platform" VERSION="$version" OUT="$ctx/forge-manager"
    cp hack/ca-certificates.crt "$ctx/hack/"
    args=(--platform "$platform" --build-arg VERSION="$version" --build-arg REVISION="$revision"
      --iidfile "$tmp/$arch.iid" -f "$PWD/Dockerfile")
    case "$tool" in
    buildah) "${b[@]}" bud --isolation chroot --timestamp "$epoch" --manifest "$image" "${args[@]}" "$ctx" ;;
    podman) "${b[@]}" build --timestamp "$epoch" --manifest "$image" "${args[@]}" "$ctx" ;;
    docker) "${b[@]}" build -t "$image-$arch" "${args[@]}" "$ctx" ;;
    esac
    check "$tool" "$image" "$version" "$platform" "$(cat "$tmp/$arch.iid")" "$tmp/$arch"
  done
  if [ "$tool" != docker ]; then
    local index n
    index=$("${b[@]}" manifest inspect "$image")
    n=$(grep -c '"architecture"' <<<"$index" || true)
    for platform in "$@"; do
      grep -q "\"architecture\": \"${platform#linux/}\"" <<<"$index" || die "index $image lacks $platform: $index"
    done
    [ "$n" -eq $# ] || die "index $image has $n images; want $# ($*)"
    echo "index $image: $* (make image-push pushes it as an OCI index)"
  fi
}

# check TOOL IMAGE VERSION PLATFORM ID DIR: the image ID's size and contents.
check() {
  local tool=$1 image=$2 version=$3 platform=$4 id=$5 dir=$6 arch=${4#linux/}
  local tar=$dir.tar root=$dir.root got want
  case "$tool" in
  buildah)
    "${b[@]}" push --quiet "$id" "docker-archive:$tar"
    got=$("${b[@]}" inspect --type image --format \
      '{{.OCIv1.OS}}/{{.OCIv1.Architecture}} {{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}' "$id")
    ;;
  podman | docker)
    "${b[@]}" save -o "$tar" "$id"
    local labels=.Config.Labels
    [ "$tool" = podman ] && labels=.Labels
    got=$("${b[@]}" image inspect --format \
      "{{.Os}}/{{.Architecture}} {{index $labels \"org.opencontainers.image.version\"}}" "$id")
    ;;
  esac
  local is="image $image ($platform):"
  [ "$got" = "$platform $version" ] || die "$is config says platform and version \"$got\"; want \"$platform $version\""

  # The layers, in order, as the runtime unpacks them (no whiteouts: scratch).
  mkdir -p "$root"
  local layer
  for layer in $(tar -xOf "$tar" manifest.json | sed -n 's/.*"Layers":\[\([^]]*\)\].*/\1/p' | tr ',"' '\n\n'); do
    tar -xOf "$tar" "$layer" | tar -x -C "$root"
  done
  cmp -s "$root/etc/ssl/certs/ca-certificates.crt" hack/ca-certificates.crt ||
    die "$is /etc/ssl/certs/ca-certificates.crt is missing or not hack/ca-certificates.crt"
  got=$(go version -m "$root/forge-manager" | awk '$1 == "build" && $2 ~ /^(CGO_ENABLED|GOOS|GOARCH)=/ {printf "%s%s", sep, $2; sep = " "}')
  want="CGO_ENABLED=0 GOARCH=$arch GOOS=linux"
  [ "$got" = "$want" ] || die "$is /forge-manager was built with \"$got\"; want \"$want\""
  if [ "$arch" = "$(go env GOHOSTARCH)" ]; then
    got=$("$root/forge-manager" version)
    [ "$got" = "forge-manager $version" ] || die "$is /forge-manager version prints \"$got\"; want \"forge-manager $version\""
  fi

  local bytes pulled
  bytes=$(stat -c %s "$tar")
  pulled=$(gzip -c "$tar" | wc -c)
  echo "image $image ($platform): $bytes bytes uncompressed ($(awk -v b="$bytes" 'BEGIN{printf "%.2f MB", b/1e6}')), about $(awk -v b="$pulled" 'BEGIN{printf "%.2f MB", b/1e6}') gzipped; version $version, CA bundle and $arch binary checked"
  if [ "$bytes" -ge "$limit" ]; then
    die "$is $bytes bytes: at or over the 15 MB limit"
  fi
}

case "${1:-}" in
build) [ $# -ge 7 ] || { echo "usage: $0 build TOOL IMAGE VERSION REVISION EPOCH PLATFORM..." >&2; exit 2; } ;;
push) [ $# -eq 4 ] || { echo "usage: $0 push TOOL IMAGE DESTINATION" >&2; exit 2; } ;;
*)
  echo "usage: $0 build|push ..." >&2
  exit 2
  ;;
esac
"$@"
