#!/bin/sh
# Build a small, real OCI image archive from Debian's busybox-static, with
# umoci and skopeo, for hull's image-store and end-to-end tests.
#
# usage: make-busybox-image.sh [--workdir-user] OUT.tar [NAME]
#
#   NAME defaults to hull-demo/busybox:latest (hull-demo/busybox:workdir-user
#   for the variant); it is written as the archive's
#   org.opencontainers.image.ref.name, as `skopeo copy ... oci-archive:OUT:NAME`
#   does.
#   --workdir-user  the Docker-semantics variant: WorkingDir=/home/app,
#                   User=app, Entrypoint=["/bin/sh","-c"], Cmd=["id"].
#
# Layers (so layer order and whiteouts are exercised):
#   1. base: /bin/busybox + applet symlinks, /etc/passwd (root, app=1000),
#      /etc/group, /home/app, /tmp, /etc/hull-doomed
#   2. adds /etc/hull-release and /etc/hull-doomed2
#   3. whiteout of /etc/hull-doomed (so the final image lacks it)
# Config: Env PATH=... and HULL_IMAGE_ENV=from-image, Cmd ["sh"].
#
# File times are pinned, so the same busybox gives the same layer digests.
# The archive is written to a temp file next to OUT and renamed: re-running
# is safe and OUT is never half-written.
set -eu

variant=default
if [ "${1:-}" = "--workdir-user" ]; then variant=workdir-user; shift; fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 [--workdir-user] OUT.tar [NAME]" >&2
    exit 2
fi
out=$1
if [ "$variant" = workdir-user ]; then
    name=${2:-hull-demo/busybox:workdir-user}
else
    name=${2:-hull-demo/busybox:latest}
fi

missing=""
[ -x /bin/busybox ] || missing="$missing busybox-static"
command -v umoci >/dev/null 2>&1 || missing="$missing umoci"
command -v skopeo >/dev/null 2>&1 || missing="$missing skopeo"
if [ -n "$missing" ]; then
    echo "$0: installing$missing" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2; }
fi
if ! /bin/busybox true; then
    echo "$0: /bin/busybox does not work" >&2; exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hull-busybox-image.XXXXXX")
tmp_out=$(dirname "$out")/.$(basename "$out").tmp.$$
trap 'rm -rf "$work" "$tmp_out"' EXIT
trap 'exit 1' INT TERM
epoch=2024-01-01T00:00:00Z
pin() { find "$1" -exec touch -h -d "$epoch" {} +; }

# Layer 1: base.
base=$work/base
mkdir -p "$base/bin" "$base/etc" "$base/home/app" "$base/root" "$base/tmp"
cp /bin/busybox "$base/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$base/bin/$applet"
done
cat > "$base/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PW
cat > "$base/etc/group" <<'GR'
root:x:0:
app:x:1000:
nogroup:x:65534:
GR
echo "doomed: removed by layer 3" > "$base/etc/hull-doomed"
chmod 1777 "$base/tmp"
chmod 0700 "$base/root"
chown 1000:1000 "$base/home/app"
pin "$base"

# Layer 2: additions.
add=$work/add
mkdir -p "$add"
echo "hull-demo busybox, layer 2" > "$add/hull-release"
echo "doomed2: stays" > "$add/hull-doomed2"
pin "$add"

layout=$work/oci
hist="--history.created $epoch"
umoci init --layout "$layout"
umoci new --image "$layout:img"
umoci config --image "$layout:img" --created "$epoch" --no-history \
    --architecture amd64 --os linux
umoci insert --image "$layout:img" $hist --history.created_by "hull: base" "$base" /
umoci insert --image "$layout:img" $hist --history.created_by "hull: add" "$add/hull-release" /etc/hull-release
umoci insert --image "$layout:img" $hist --history.created_by "hull: add2" "$add/hull-doomed2" /etc/hull-doomed2
umoci insert --image "$layout:img" $hist --history.created_by "hull: whiteout" --whiteout /etc/hull-doomed

set -- --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env HULL_IMAGE_ENV=from-image
if [ "$variant" = workdir-user ]; then
    set -- "$@" --config.workingdir /home/app --config.user app \
        --config.entrypoint /bin/sh --config.entrypoint -c --config.cmd id
else
    set -- "$@" --config.cmd sh
fi
umoci config --image "$layout:img" --created "$epoch" --no-history "$@"

skopeo --insecure-policy copy -q "oci:$layout:img" "oci-archive:$tmp_out:$name"
mv -f "$tmp_out" "$out"
