//go:build !ebpfnet_variant

package bpf

import "github.com/cilium/ebpf"

// variant changes nothing; see variant_upgrade.go.
func variant(*ebpf.CollectionSpec) {}
