package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/ebpfnet/ebpfnet/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary(t), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "ebpfnet ") {
		t.Errorf("--version: %q, %v", out, err)
	}
}
