#!/usr/bin/env bash
# Builds test-looper's local base image without any registry: a rootfs assembled from Debian's
# busybox-static and bash-static, loaded with `docker import`. Idempotent: does nothing if the
# image already exists (pass --force to rebuild).
#
#   deploy/build_base_image.sh [--force] [IMAGE]     (default IMAGE: test-looper/base:1)
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
image="${1:-${TEST_LOOPER_BASE_IMAGE:-test-looper/base:1}}"

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image already present"
    exit 0
fi

need=()
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /bin/bash-static ] || need+=(bash-static)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing ${need[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}"; }
fi

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var/tmp,home}
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
cp /bin/bash-static "$rootfs/bin/bash"
# One link per busybox applet; bash stays the real bash.
for applet in $("$rootfs/bin/busybox" --list); do
    [ "$applet" = bash ] && continue
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
ln -sf bash "$rootfs/bin/sh"
for dir in sbin usr/bin usr/sbin; do
    for tool in "$rootfs"/bin/*; do ln -sf "/bin/$(basename "$tool")" "$rootfs/$dir/$(basename "$tool")"; done
done
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "test-looper base image (busybox-static + bash-static)" \
    - "$image" >/dev/null
echo "built base image $image"
