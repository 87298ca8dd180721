package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest configuration file read: a real one is a few
// hundred bytes, and a mistaken path to a big file should fail at once.
const MaxFileSize = 1 << 20

// ReadRegular reads a regular file of at most limit bytes. Anything else
// is refused before it is read: a FIFO or a character device would never
// end (or, opened for reading, never start), and a directory is a mistake.
func ReadRegular(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer; fstat then says what it is.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not a regular file", path, kindOf(st.Mode()))
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d KiB; is it the right file?", path, limit>>10)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit { // it grew while read
		return nil, fmt.Errorf("%s is larger than %d KiB; is it the right file?", path, limit>>10)
	}
	return b, nil
}

func kindOf(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file"
}

// File is a configuration file as read: its keys for Decode, and the line
// each was written on.
type File struct {
	Path string
	Raw  map[string]any
	doc  *yaml.Node
}

// ReadFile reads a YAML configuration file of one document: its syntax,
// not its keys (Decode checks those).
func ReadFile(path string) (*File, error) {
	b, err := ReadRegular(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	f := &File{Path: path}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return f, nil // an empty file keeps every default
	} else if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
		return nil, fmt.Errorf("config file %s: line %d: a second YAML document; ebpfnet reads one", path, more.Line)
	}
	if len(doc.Content) == 0 {
		return f, nil // comments only
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return f, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: line %d: want a mapping of keys (interfaces:, attach:, ...)", path, top.Line)
	}
	if err := top.Decode(&f.Raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	f.doc = top
	return f, nil
}

// Line is the line key (as a KeyError names it: interfaces.include[1]) is
// written on, or its closest parent's, or 0.
func (f *File) Line(key string) int {
	line, n := 0, f.doc
	// A key's name may hold dots itself (metrics.system.network.io): at each
	// level, the longest run of parts that names an entry is the entry.
	parts := strings.Split(key, ".")
	for i := 0; i < len(parts); {
		var k, v *yaml.Node
		var index string
		j := len(parts)
		for ; j > i; j-- {
			var name string
			name, index, _ = strings.Cut(strings.Join(parts[i:j], "."), "[")
			if k, v = entry(n, name); k != nil {
				break
			}
		}
		if k == nil {
			return line
		}
		line, n, i = k.Line, v, j
		if index != "" {
			x, err := strconv.Atoi(strings.TrimSuffix(index, "]"))
			if err != nil || n.Kind != yaml.SequenceNode || x >= len(n.Content) {
				return line
			}
			line, n = n.Content[x].Line, n.Content[x]
		}
	}
	return line
}

// entry returns the key and value nodes of key in mapping n, or nils.
func entry(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// LoadFile reads and decodes a configuration file over the defaults. Its
// errors name the file and the line of each key.
func LoadFile(path string) (Config, error) {
	f, err := ReadFile(path)
	if err != nil {
		return Default(), err
	}
	cfg, err := Decode(f.Raw)
	return cfg, f.Explain(err)
}

// Explain prefixes each KeyError in err with the file and the key's line.
func (f *File) Explain(err error) error {
	keyed, other := KeyErrors(err)
	errs := other
	for _, ke := range keyed {
		errs = append(errs, fmt.Errorf("config file %s: line %d: %w", f.Path, f.Line(ke.Key), ke))
	}
	return errors.Join(errs...)
}
