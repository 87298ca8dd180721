#!/usr/bin/env bash
# make test-kernel: run the kernel tests on Debian 12's 6.1 kernel.
#
# Boots Debian's linux-image-6.1.0-*-cloud-amd64 under qemu (TCG: these
# machines have no KVM) from an initramfs holding busybox-static, the
# modules the tests need from that package, bpftool, setpriv, unshare and wg with
# their libraries, and the statically built test binaries. /init (init.sh)
# runs them and prints one result line per binary; this script turns those
# into its exit code. Everything it downloads or builds stays in
# build/vmtest, so a second run only rebuilds the test binaries.
#
# Needs: qemu-system-x86, busybox-static, bpftool, util-linux (setpriv, unshare),
# apt (to fetch the kernel and wireguard-tools packages), go. VMTEST_PACKAGES
# (default: bpf internal/datapath cmd/ebpfnet) picks the packages to test.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$root/build/vmtest
mkdir -p "$work"
cd "$work"

# Tests that cannot run in the VM, and why. The first three build with go
# (and make, and gcc), which the initramfs has not; the memory test needs a
# cgroup hierarchy, which the initramfs does not mount; the others check
# files with tools the initramfs has not either and that do not depend on
# the kernel: systemd-analyze (the unit; the binary's run with the unit's
# privileges does run here), promtool and prometheus (alerts, dashboard),
# podman and buildah (the image), kubeconform, Helm's chart and the
# manifests (the Kubernetes examples), the Grafana schema; Prometheus 3 and
# VictoriaMetrics (the backends' tests); containerd and the CNI plugins
# (real pods through CRI: the pods' naming on this kernel is
# TestPodFromTheCacheOnTheKernel, which runs here).
skip='^(TestMakeRun|TestBuiltWithCgoDropsCapabilitiesToo|TestRaceBuildUnderReadersAndChurn|TestMemoryLimitIsNamed|TestSystemdUnitChecks|TestAlertRules|TestDashboardQueriesReturnSeries|TestDashboardSchema|TestContainerImage|TestKubernetesManifests|TestHelmChart|TestAttachErrorAlertFires|TestPrometheus3OTLP|TestPrometheus3AttachErrorAlert|TestPrometheus3Dashboard|TestVictoriaMetrics|TestPodsCountedExactly|TestFiftyPodsAtOnce)$'

fetch() { # fetch PACKAGE: download and unpack a Debian package once
	if [ ! -d "pkg/$1" ]; then
		rm -rf "$1"_*.deb "pkg/$1.tmp"
		apt-get download "$1" 2>/dev/null
		dpkg-deb -x "$1"_*.deb "pkg/$1.tmp" && mv "pkg/$1.tmp" "pkg/$1"
		rm -f "$1"_*.deb
	fi
}
mkdir -p pkg
# Fresh package lists the first time: a stale list names a kernel build
# the archive no longer serves.
if [ ! -e pkg/.updated ]; then
	apt-get update -qq && touch pkg/.updated
fi
kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-6\.1\./ {print $2; exit}')
if [ -z "$kpkg" ]; then
	echo "vmtest: apt knows no linux-image-6.1 cloud kernel (Debian 12's)" >&2
	exit 1
fi
fetch "$kpkg"
fetch wireguard-tools
kdir=pkg/$kpkg
kernel=$(ls "$kdir"/boot/vmlinuz-*)
moddir=$(ls -d "$kdir"/lib/modules/*)

rm -rf rootfs
mkdir -p rootfs/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules,usr/bin,usr/sbin}
cp /bin/busybox rootfs/bin/busybox
for applet in $(rootfs/bin/busybox --list); do
	[ -e "rootfs/bin/$applet" ] || ln -s busybox "rootfs/bin/$applet"
done
# Loaded in this order by init: each after what it depends on.
modules="veth ifb sch_ingress cls_bpf tun tunnel4 ip_tunnel ipip udp_tunnel ip6_udp_tunnel
	libcurve25519-generic curve25519-x86_64 libchacha chacha-x86_64 poly1305-x86_64
	libchacha20poly1305 wireguard"
for m in $modules; do
	cp "$(find "$moddir" -name "$m.ko" | head -1)" rootfs/lib/modules/
done
echo $modules >rootfs/etc/modules

# Dynamic tools with the libraries they load.
copy_with_libs() {
	cp "$1" "rootfs$2"
	ldd "$1" | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
		mkdir -p "rootfs$(dirname "$lib")"
		cp -L "$lib" "rootfs$lib"
	done
}
copy_with_libs "$(command -v bpftool)" /usr/sbin/bpftool
copy_with_libs "$(command -v setpriv)" /usr/bin/setpriv
copy_with_libs "$(command -v unshare)" /usr/bin/unshare
copy_with_libs "pkg/wireguard-tools/usr/bin/wg" /usr/bin/wg
echo 'root:x:0:0:root:/:/bin/sh' >rootfs/etc/passwd
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >>rootfs/etc/passwd

# The tests, static, and the sidecar they run.
(
	cd "$root"
	export CGO_ENABLED=0
	go build -tags grpcnotrace -o "$work/rootfs/bin/ebpfnet" ./cmd/ebpfnet
	# The upgrade test's previous release (make previous-release).
	cp -L bin/ebpfnet-previous "$work/rootfs/bin/ebpfnet-previous"
	for pkg in ${VMTEST_PACKAGES:-bpf internal/datapath cmd/ebpfnet}; do
		go test -c -o "$work/rootfs/tests/$(basename "$pkg").test" "./$pkg"
	done
)
# The systemd unit whose privileges a test runs the binary with.
cp "$root/examples/systemd/ebpfnet.service" rootfs/etc/ebpfnet.service
cp "$root/internal/vmtest/init.sh" rootfs/init
chmod +x rootfs/init
printf '%s\n' "$skip" >rootfs/etc/skip

(cd rootfs && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >initramfs.gz

echo "vmtest: booting $(basename "$kernel") with $(du -h initramfs.gz | cut -f1) of initramfs"
limit=1800
code=0
timeout $limit qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 2G -smp 2 \
	-nographic -no-reboot -kernel "$kernel" -initrd initramfs.gz \
	-append 'console=ttyS0 panic=-1 quiet' </dev/null >console.log 2>&1 || code=$?

# The full console is in build/vmtest/console.log; here the verdicts.
grep -aE '^(--- (FAIL|SKIP)|    --- (FAIL|SKIP)|vmtest)' console.log | tr -d '\r' || true
if grep -aq '^vmtest: [0-9]* passed, 0 failed' console.log; then
	exit 0
fi
# What each failed test said, without the sidecar's log lines.
echo "vmtest: what the failed tests said:" >&2
tr -d '\r' <console.log | awk '
	/^=== RUN/ && $3 !~ /\// { block = "" }
	{ block = block $0 "\n" }
	/^--- FAIL/ { printf "%s", block; block = "" }' |
	grep -avE ' level=|^=== (RUN|PAUSE|CONT|NAME)' | tail -60 >&2 || true
# A binary that panicked (go test's timeout among them): where.
grep -a -A30 '^panic: ' console.log | head -40 >&2 || true
if ! grep -aq '^vmtest: [0-9]* passed' console.log; then
	if [ $code -eq 124 ]; then
		echo "vmtest: the VM was stopped after ${limit}s, before it ended" >&2
	else
		echo "vmtest: the VM ended (qemu exit $code) before its closing line" >&2
	fi
	echo "vmtest: what the kernel said of stalls, lockups, memory and panics:" >&2
	grep -aE 'rcu.*stall|soft lockup|hard LOCKUP|Out of memory|oom-kill|Kernel panic|BUG:|Oops|WARNING:|blocked for more than|unregister_netdevice: waiting' console.log | head -20 >&2 || true
	echo "vmtest: the end of build/vmtest/console.log:" >&2
	tail -60 console.log >&2
fi
exit 1
