#!/bin/sh
# Prepares everything tests/kernel.rs boots: Debian's stock kernel, the
# kernel modules the scenarios need (the kernel's own from its package,
# gpio-sim and the test modules built out of tree), busybox, and an
# initramfs holding them with the two static binaries.
#
#   build.sh OUT KLIPPER_MCU DRIVER
#
# OUT is a cache folder under target/: downloads, extracted files and
# module builds are kept there and reused; only the initramfs is rebuilt
# on every run (the binaries change). Nothing is installed but the tools
# (qemu-system-x86, the kernel's compiler, make) when missing. The kernel,
# headers and sources are downloaded with `apt-get download` and unpacked
# under OUT, never installed. Prints `kernel=PATH` and `initrd=PATH` last.
set -eu

OUT=$1
MCU_BIN=$2
DRIVER_BIN=$3
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log() { echo "[vm build] $*" >&2; }

# apt-get, tried again a few times: another apt-get on the machine holds
# the package lists' lock for a while (DPkg::Lock::Timeout covers only
# dpkg's own lock).
apt_get() {
    for try in 1 2 3 4 5 6; do
        DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 "$@" >&2 && return 0
        log "apt-get $1 failed (try $try), again in 10 s"
        sleep 10
    done
    return 1
}

# Which kernel: the one linux-image-amd64 currently points at. Resolved
# once and remembered, so warm runs do not depend on the package lists.
if [ -s "$OUT/abi" ]; then
    ABI=$(cat "$OUT/abi")
else
    log "apt-get update"
    apt_get update
    ABI=$(apt-cache depends linux-image-amd64 |
        sed -n 's/^ *Depends: linux-image-//p' | head -n 1)
    [ -n "$ABI" ] || { log "cannot tell which kernel linux-image-amd64 is"; exit 1; }
    echo "$ABI" >"$OUT/abi.tmp" && mv "$OUT/abi.tmp" "$OUT/abi"
fi
K=$OUT/$ABI
mkdir -p "$K/debs"
log "kernel $ABI"

# Tools, from Debian's packages when missing.
if [ ! -s "$K/compiler" ]; then
    apt-cache depends "linux-headers-$ABI" |
        sed -n 's/^ *Depends: \(linux-compiler-gcc-[0-9]*\)-.*/\1/p' |
        sed 's/linux-compiler-//' | head -n 1 >"$K/compiler"
fi
CC=$(cat "$K/compiler")
missing=
command -v qemu-system-x86_64 >/dev/null || missing="$missing qemu-system-x86"
command -v "$CC" >/dev/null || missing="$missing $CC"
command -v make >/dev/null || missing="$missing make"
command -v xz >/dev/null || missing="$missing xz-utils"
command -v strings >/dev/null || missing="$missing binutils"
if [ -n "$missing" ]; then
    log "installing$missing"
    apt_get update
    apt_get install --no-install-recommends $missing
fi

# Downloads: the image, its headers (with their common part and kbuild),
# the matching source package, busybox-static.
if [ ! -e "$K/debs/done" ]; then
    VER=$(apt-cache policy "linux-image-$ABI" | sed -n 's/^ *Candidate: //p')
    MAJMIN=$(echo "$VER" | cut -d. -f1,2)
    HDR_DEPS=$(apt-cache depends "linux-headers-$ABI" |
        sed -n 's/^ *Depends: \(linux-\(headers\|kbuild\)-[^ ]*\)$/\1/p')
    log "downloading linux-image-$ABI $VER and friends"
    (cd "$K/debs" && apt_get download "linux-image-$ABI=$VER" \
        "linux-headers-$ABI=$VER" $(for d in $HDR_DEPS; do echo "$d=$VER"; done) \
        "linux-source-$MAJMIN=$VER" busybox-static)
    touch "$K/debs/done"
fi

# Headers and kbuild, unpacked whole (small); their top Makefile includes
# the common part by an absolute /usr/src path, pointed here instead.
HDR=$K/root/usr/src/linux-headers-$ABI
if [ ! -e "$K/headers.done" ]; then
    log "unpacking headers, kbuild, busybox"
    for d in "$K"/debs/linux-headers-*.deb "$K"/debs/linux-kbuild-*.deb "$K"/debs/busybox-static_*.deb; do
        dpkg-deb -x "$d" "$K/root"
    done
    sed -i "s|^include /usr/src/|include $K/root/usr/src/|" "$HDR/Makefile"
    touch "$K/headers.done"
fi
BUSYBOX=$K/root/bin/busybox

# From the image: the kernel and the modules the init script loads, with
# every module they depend on (read from each module's own `depends=`).
IMG_DEB=$(ls "$K"/debs/linux-image-*.deb)
# The kernel's own modules the VM loads (the rest are built in).
WANT="configfs i2c-dev industrialio"
if [ "$(cat "$K/image.done" 2>/dev/null)" != "$WANT" ]; then
    log "unpacking the kernel and its modules"
    dpkg-deb --fsys-tarfile "$IMG_DEB" >"$K/image.tar"
    tar -t -f "$K/image.tar" | grep '\.ko' >"$K/image.list"
    rm -rf "$K/image" "$K/image.order.tmp"
    mkdir -p "$K/image"
    tar -x -f "$K/image.tar" -C "$K/image" "./boot/vmlinuz-$ABI"
    want=$WANT
    done_mods=
    while [ -n "$want" ]; do
        next=
        for m in $want; do
            case " $done_mods " in *" $m "*) continue ;; esac
            # Module names treat - and _ alike.
            pat=$(echo "$m" | sed 's/[-_]/[-_]/g')
            path=$(grep "/$pat\.ko\(\.xz\|\.zst\)\?\$" "$K/image.list" | head -n 1)
            [ -n "$path" ] || { log "module $m not in the image"; exit 1; }
            tar -x -f "$K/image.tar" -C "$K/image" "$path"
            case "$path" in
            *.xz) xz -d -f "$K/image/$path" ;;
            *.zst) zstd -q -d --rm -f "$K/image/$path" ;;
            esac
            ko=$K/image/${path%.xz}
            ko=${ko%.zst}
            echo "$ko" >>"$K/image.order.tmp"
            done_mods="$done_mods $m"
            deps=$(strings -a "$ko" | sed -n 's/^depends=//p' | tr ',' ' ')
            next="$next $deps"
        done
        want=$(echo $next)
    done
    # Load order: dependencies first (they were found last).
    tac "$K/image.order.tmp" | awk '!seen[$0]++' >"$K/image.order"
    rm -f "$K/image.order.tmp" "$K/image.tar"
    echo "$WANT" >"$K/image.done"
fi

# The module sources: gpio-sim.c and irq_sim.c (with gpiolib.h) from the
# matching source package; only these three files are unpacked.
SRC=$K/src
if [ ! -e "$SRC/done" ]; then
    log "unpacking gpio-sim.c and irq_sim.c from the source package"
    mkdir -p "$SRC"
    SRC_DEB=$(ls "$K"/debs/linux-source-*.deb)
    TARBALL=$(dpkg-deb -c "$SRC_DEB" | sed -n 's|.*\./\(usr/src/linux-source-.*\.tar\.xz\)$|\1|p')
    TOP=$(basename "$TARBALL" .tar.xz)
    dpkg-deb --fsys-tarfile "$SRC_DEB" | tar -x -O "./$TARBALL" |
        xz -d | tar -x -C "$SRC" "$TOP/drivers/gpio/gpio-sim.c" \
            "$TOP/drivers/gpio/gpiolib.h" "$TOP/kernel/irq/irq_sim.c"
    mv "$SRC/$TOP"/drivers/gpio/gpio-sim.c "$SRC/gpio-sim-main.c"
    mv "$SRC/$TOP"/drivers/gpio/gpiolib.h "$SRC/$TOP"/kernel/irq/irq_sim.c "$SRC/"
    rm -rf "${SRC:?}/$TOP"
    # irq_to_desc is not exported to modules; generic_handle_irq (which
    # is) does the same lookup and dispatch.
    sed -i 's/handle_simple_irq(irq_to_desc(irqnum))/generic_handle_irq(irqnum)/' "$SRC/irq_sim.c"
    touch "$SRC/done"
    # The three files are all this cache needs of the 139 MB package.
    rm -f "$SRC_DEB"
fi

# Out-of-tree build, redone when a test module's source changed.
B=$K/modbuild
mkdir -p "$B"
changed=
for f in "$HERE"/modules/* "$SRC"/gpio-sim-main.c "$SRC"/gpiolib.h "$SRC"/irq_sim.c; do
    if ! cmp -s "$f" "$B/$(basename "$f")"; then
        cp "$f" "$B/"
        changed=1
    fi
done
OURS="gpio-sim klipper_test_i2c klipper_test_pwm klipper_test_spi klipper_test_iio"
for m in $OURS; do
    [ -e "$B/$m.ko" ] || changed=1
done
if [ -n "$changed" ]; then
    log "building gpio-sim and the test modules"
    make -s -C "$HDR" M="$B" CC="$CC" modules >&2
fi

# The initramfs: busybox, modules in load order, init, the two binaries.
log "assembling the initramfs"
R=$OUT/initramfs-root
rm -rf "$R"
mkdir -p "$R/bin" "$R/modules" "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/run"
cp "$BUSYBOX" "$R/bin/busybox"
n=10
for ko in $(cat "$K/image.order") $(for m in $OURS; do echo "$B/$m.ko"; done); do
    cp "$ko" "$R/modules/$n-$(basename "$ko")"
    n=$((n + 1))
done
cp "$HERE/init" "$R/init"
chmod 755 "$R/init"
cp "$MCU_BIN" "$R/bin/klipper_mcu"
cp "$DRIVER_BIN" "$R/bin/kernel_vm_driver"
(cd "$R" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 >"$OUT/initramfs.cpio.gz.tmp")
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
echo "kernel=$K/image/boot/vmlinuz-$ABI"
echo "initrd=$OUT/initramfs.cpio.gz"
