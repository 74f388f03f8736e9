#!/usr/bin/env bash
# Build the local stand-in for python:3.11-slim-bookworm without pulling from any registry:
#   debootstrap --variant=minbase bookworm (+ python3, python3-venv) -> tarball (cached) -> "$podman" import.
# Python goes in at debootstrap time (--include), not in the Dockerfiles: image builds must need no
# network, and the slim upstream base this stands in for ships Python too.
# Usage: deploy/base-image.sh <cache-dir> <image-tag>
set -euo pipefail
podman=${PODMAN:-podman}
cache_dir=${1:?cache dir}
tag=${2:?image tag}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-}
if [[ -z "$mirror" ]]; then
  # The mirror apt already uses on this machine (deb822 or one-line sources), else Debian's CDN.
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -n "$mirror" ]] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [[ -n "$mirror" ]] || mirror=http://deb.debian.org/debian
fi
include=${BASE_INCLUDE:-python3,python3-venv,ca-certificates,tzdata}
tarball="$cache_dir/$suite-minbase-python3.tar"
mkdir -p "$cache_dir"

if [[ ! -s "$tarball" && -z "${BASE_REFRESH:-}" ]] && "$podman" image exists "$tag"; then
  # A clean clone on a machine that already built the base (CI after a developer, or a second clone):
  # keep it, so podman's layer cache stays valid. BASE_REFRESH=1 debootstraps a fresh one.
  echo "base-image: reusing $tag from podman's storage (no cached tarball; BASE_REFRESH=1 rebuilds it)"
  exit 0
fi

if [[ ! -s "$tarball" ]]; then
  root=$(mktemp -d "$cache_dir/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "base-image: debootstrap --variant=minbase $suite from $mirror (include: $include)"
  debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 || {
    tail -n 30 "$cache_dir/debootstrap.log" >&2; exit 1; }
  # Slim it like the upstream slim images: no apt lists, docs, man pages or caches.
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
         "$root"/usr/share/info/* "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
  tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi

digest=$(sha256sum "$tarball" | cut -c1-16)
have=$("$podman" image inspect --format '{{ index .Labels "imagemesh.base.digest" }}' "$tag" 2>/dev/null || true)
if [[ "$have" == "$digest" ]]; then
  echo "base-image: $tag is current ($digest)"
  exit 0
fi
echo "base-image: podman import $tarball -> $tag"
"$podman" import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL imagemesh.base.digest=$digest" \
  --change 'CMD ["/bin/bash"]' \
  "$tarball" "$tag" >/dev/null
echo "base-image: $tag imported ($digest)"
