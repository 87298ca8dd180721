//go:build linux

package cri

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// The images the harness imports: no registry is reachable, so both are
// made here, offline.
const (
	// PauseImage is the sandbox image: pause/, built static.
	PauseImage = "localhost/ebpfnet-test/pause:1"
	// BusyboxImage holds a static busybox as /bin/busybox, with a link in
	// /bin for each of its applets.
	BusyboxImage = "localhost/ebpfnet-test/busybox:1"
)

const (
	pausePackage = "github.com/ebpfnet/ebpfnet/internal/testenv/cri/pause"
	busyboxPath  = "/bin/busybox"
)

// imageFile is one entry of an image's only layer.
type imageFile struct {
	name string // relative: "bin/busybox"
	dir  bool
	link string // a symlink's target
	data []byte // a regular file's contents (mode 0755)
}

// buildPause compiles the pause program, static, into dir.
func buildPause(dir string) ([]byte, error) {
	out := filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pausePackage)
	// Built in the module, wherever the test runs.
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if _, err := os.Stat(file); err == nil {
			cmd.Dir = filepath.Dir(file)
		}
	}
	// The test runs without a network: whatever the build needs must be
	// in the module cache already, and a miss says so at once. The test's
	// own GOFLAGS (-race, -cover) are not for a static binary.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOPROXY=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %v\n%s", pausePackage, err, b)
	}
	return os.ReadFile(out)
}

// busybox reads the static busybox binary and lists its applets. It fails
// when the binary is dynamically linked: the image has no libc.
func busybox() (data []byte, applets []string, err error) {
	f, err := elf.Open(busyboxPath)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, nil, fmt.Errorf("%s is dynamically linked (install busybox-static)", busyboxPath)
		}
	}
	data, err = os.ReadFile(busyboxPath)
	if err != nil {
		return nil, nil, err
	}
	out, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return nil, nil, fmt.Errorf("%s --list: %w", busyboxPath, err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	return data, applets, nil
}

func busyboxFiles(data []byte, applets []string) []imageFile {
	files := []imageFile{{name: "bin", dir: true}, {name: "bin/busybox", data: data}}
	for _, a := range applets {
		files = append(files, imageFile{name: "bin/" + a, link: "busybox"})
	}
	return append(files, imageFile{name: "tmp", dir: true})
}

// writeOCIArchive writes an OCI image layout, as a tar that `ctr images
// import` takes, of a one-layer image named ref for this machine's
// platform.
func writeOCIArchive(path, ref string, files []imageFile, entrypoint, cmd []string) error {
	epoch := time.Unix(0, 0)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	sort.SliceStable(files, func(i, j int) bool { return files[i].name < files[j].name })
	for _, f := range files {
		h := &tar.Header{Name: f.name, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, f.name+"/", 0o755
		case f.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.link, 0o777
		default:
			h.Typeflag, h.Size, h.Mode = tar.TypeReg, int64(len(f.data)), 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}

	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Platform    map[string]string `json:"platform,omitempty"`
	}
	blobs := map[string][]byte{}
	blob := func(mediaType string, b []byte) descriptor {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return descriptor{MediaType: mediaType, Digest: d, Size: len(b)}
	}
	// Uncompressed, so that the layer's digest is its diff ID.
	layerDesc := blob("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": entrypoint,
			"Cmd":        cmd,
			"Env":        []string{"PATH=/bin"},
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	if err != nil {
		return err
	}
	configDesc := blob("application/vnd.oci.image.config.v1+json", config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	manifestDesc := blob("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": ref,
	}
	manifestDesc.Platform = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{manifestDesc},
	})
	if err != nil {
		return err
	}

	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	aw := tar.NewWriter(out)
	add := func(name string, b []byte) error {
		if err := aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := aw.Write(b)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := add("index.json", index); err != nil {
		return err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := add("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d]); err != nil {
			return err
		}
	}
	if err := aw.Close(); err != nil {
		return err
	}
	return out.Close()
}
