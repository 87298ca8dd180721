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
	start=$(cut -d. -f1 /proc/uptime)
	echo "vmtest: $name: started at ${start}s"
	# Streamed, so that the console shows how far a binary got. Each takes
	# under 2.5 minutes here, and under 3.5 with four CPU hogs on the host;
	# go test's 12 minutes leave room for a machine three times slower. A
	# binary that outlives them by a minute is stuck in the kernel (a
	# process in D state cannot end): the kernel's blocked tasks are
	# printed, the binary counts as failed, and the next one runs.
	rm -f /tmp/$name.code
	: >/tmp/$name.out
	tail -f /tmp/$name.out &
	streamer=$!
	{ $t -test.v -test.skip "$(cat /etc/skip)" -test.timeout 12m >/tmp/$name.out 2>&1; echo $? >/tmp/$name.c && mv /tmp/$name.c /tmp/$name.code; } &
	waited=0
	while [ ! -e /tmp/$name.code ] && [ $waited -lt 780 ]; do
		sleep 1
		waited=$((waited + 1))
	done
	sleep 2 # for tail to print the last lines
	kill $streamer
	if [ -e /tmp/$name.code ]; then
		code=$(cat /tmp/$name.code)
	else
		echo "vmtest: $name: stuck, still running after ${waited}s; the kernel's blocked tasks and its last words:"
		echo w >/proc/sysrq-trigger
		dmesg | tail -150
		code=stuck
	fi
	p=$(grep -c '^--- PASS' /tmp/$name.out)
	f=$(grep -c '^--- FAIL' /tmp/$name.out)
	s=$(grep -c '^--- SKIP' /tmp/$name.out)
	[ "$code" != 0 ] && [ $f -eq 0 ] && f=1
	echo "vmtest: $name: exit $code, $p passed, $f failed, $s skipped, $(($(cut -d. -f1 /proc/uptime) - start))s"
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
# What the kernel said about BPF, for when a test failed inexplicably.
dmesg | grep -iE "bpf|verifier|warn|bug" | tail -20
echo "vmtest: $passed passed, $failed failed, $skipped skipped"
poweroff -f
