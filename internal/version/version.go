// Package version says which ebpfnet this is.
package version

import "runtime/debug"

// Version is set at build time (-ldflags "-X .../internal/version.Version=v1.2.3");
// otherwise it is the module version the Go toolchain recorded, or "dev".
var Version = ""

// Module is ebpfnet's module path.
const Module = "github.com/ebpfnet/ebpfnet"

// Get returns ebpfnet's version.
func Get() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Path == Module && info.Main.Version != "" && info.Main.Version != "(devel)" {
			return info.Main.Version
		}
		// Built into another binary, such as a custom Collector.
		for _, d := range info.Deps {
			if d.Path == Module && d.Version != "(devel)" {
				return d.Version
			}
		}
	}
	return "dev"
}
