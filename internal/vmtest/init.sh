#!/bin/sh
# /init of the 6.1 test VM (see run.sh): load the modules, run every test
# binary with the kernel tests required, print one line per test binary and
# a closing count, and power off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/net
[ -e /dev/net/tun ] || mknod /dev/net/tun c 10 200
for m in $(cat /etc/modules); do
	insmod /lib/modules/$m.ko || echo "vmtest: insmod $m failed"
done
ip link set lo up
export PATH=/usr/sbin:/usr/bin:/sbin:/bin EBPFNET_PRIVILEGED=require EBPFNET_BINARY=/bin/ebpfnet EBPFNET_PREVIOUS_BINARY=/bin/ebpfnet-previous EBPFNET_UNIT=/etc/ebpfnet.service HOME=/tmp TMPDIR=/tmp
echo "vmtest: kernel $(uname -r)"
passed=0 failed=0 skipped=0
for t in /tests/*.test; do
	name=$(basename $t .test)
	$t -test.v -test.skip "$(cat /etc/skip)" -test.timeout 20m >/tmp/$name.out 2>&1
	code=$?
	cat /tmp/$name.out
	p=$(grep -c '^--- PASS' /tmp/$name.out)
	f=$(grep -c '^--- FAIL' /tmp/$name.out)
	s=$(grep -c '^--- SKIP' /tmp/$name.out)
	[ $code -ne 0 ] && [ $f -eq 0 ] && f=1
	echo "vmtest: $name: exit $code, $p passed, $f failed, $s skipped"
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
# What the kernel said about BPF, for when a test failed inexplicably.
dmesg | grep -iE "bpf|verifier|warn|bug" | tail -20
echo "vmtest: $passed passed, $failed failed, $skipped skipped"
poweroff -f
