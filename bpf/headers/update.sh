#!/bin/sh
# Refreshes the pinned headers the eBPF program is compiled against.
# They come from Debian's packages, so `make generate` gives the same bytes
# on every machine:
#   linux/bpf.h, linux/bpf_common.h  <- linux-libc-dev (kernel UAPI)
#   bpf/bpf_helpers.h, bpf/bpf_helper_defs.h, bpf/bpf_endian.h <- libbpf-dev
# linux/types.h is ours: the few fixed-width types the UAPI headers need,
# so no architecture-specific asm/ headers are pulled in.
set -eu
cd "$(dirname "$0")"
cp /usr/include/linux/bpf.h /usr/include/linux/bpf_common.h linux/
cp /usr/include/bpf/bpf_helpers.h /usr/include/bpf/bpf_helper_defs.h /usr/include/bpf/bpf_endian.h bpf/
