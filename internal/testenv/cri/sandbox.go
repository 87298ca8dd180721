//go:build linux

package cri

import (
	"encoding/json"
	"errors"
)

// sandboxInfo is what the harness reads of a verbose PodSandboxStatus's
// "info": containerd's own view of the sandbox.
type sandboxInfo struct {
	Pid         int `json:"pid"`
	RuntimeSpec struct {
		Linux struct {
			Namespaces []struct {
				Type string `json:"type"`
				Path string `json:"path"`
			} `json:"namespaces"`
		} `json:"linux"`
	} `json:"runtimeSpec"`
}

func parseSandboxInfo(info map[string]string) (sandboxInfo, error) {
	var si sandboxInfo
	raw, ok := info["info"]
	if !ok {
		return si, errors.New("verbose sandbox status has no info")
	}
	err := json.Unmarshal([]byte(raw), &si)
	return si, err
}
