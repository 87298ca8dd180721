package pods

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watch returns an Index of the results cached under dir (libcni's cache
// directory), and follows them: a result is read when it is written (CNI
// ADD returned) and forgotten when it is removed (CNI DEL), through
// inotify, so that nothing reads the cache again at every collection.
func Watch(dir string, log *slog.Logger) (*Index, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("pods.cni_cache_dir %s: not a directory (%v)", dir, err)
	}
	x := newIndex(dir, log)
	w, err := newWatcher(filepath.Join(dir, "results"))
	if err != nil {
		return nil, err
	}
	x.watch = w
	// After the watch is set, so that nothing written in between is missed.
	x.rescan()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.run(x)
	}()
	return x, nil
}

// Close stops following the cache.
func (x *Index) Close() {
	if x.watch != nil {
		x.watch.stop()
	}
}

// rescan reads every cached result again.
func (x *Index) rescan() {
	atts, err := x.cache.read("")
	if err != nil {
		x.log.Warn("read the CNI result cache", "error", err)
		return
	}
	x.setAttachments(atts, nil, true)
}

// containerID finds the container ID in a cache file's name
// (network-containerID-ifname): containerd, CRI-O and Docker all make
// them 64 hexadecimal digits. libcni reads the container's files.
var containerID = regexp.MustCompile(`(?:^|-)([0-9a-f]{64})-`)

// changed reads the results of the container a cache file belongs to,
// after the file was written or removed.
func (x *Index) changed(file string) {
	m := containerID.FindStringSubmatch(file)
	if m == nil {
		x.rescan() // a runtime of other IDs: read everything
		return
	}
	atts, err := x.cache.read(m[1])
	if err != nil {
		x.log.Warn("read the CNI result cache", "file", file, "error", err)
		return
	}
	files := []string{file}
	for _, a := range atts {
		files = append(files, a.file)
	}
	x.setAttachments(atts, files, false)
}

// watcher is an inotify watch of the results directory, or of its parent
// until it exists.
type watcher struct {
	fd, wake int
	dir      string
	onDir    bool // watching the results directory itself
	wg       sync.WaitGroup
	once     sync.Once
}

const watchMask = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_DELETE_SELF

func newWatcher(dir string) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	w := &watcher{fd: fd, wake: wake, dir: dir}
	if err := w.add(); err != nil {
		unix.Close(fd)
		unix.Close(wake)
		return nil, err
	}
	return w, nil
}

// add watches the results directory, or its parent for it to appear.
func (w *watcher) add() error {
	if _, err := unix.InotifyAddWatch(w.fd, w.dir, watchMask); err == nil {
		w.onDir = true
		return nil
	}
	_, err := unix.InotifyAddWatch(w.fd, filepath.Dir(w.dir), unix.IN_CREATE|unix.IN_MOVED_TO)
	if err != nil {
		return fmt.Errorf("watch %s: %w", filepath.Dir(w.dir), err)
	}
	return nil
}

func (w *watcher) stop() {
	w.once.Do(func() {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(w.wake, one[:])
		w.wg.Wait()
		unix.Close(w.fd)
		unix.Close(w.wake)
	})
}

// run reads inotify events until stop.
func (w *watcher) run(x *Index) {
	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		n, err := unix.Read(w.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			for len(name) > 0 && name[len(name)-1] == 0 {
				name = name[:len(name)-1]
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
			switch {
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				x.rescan() // events were lost
			case !w.onDir:
				// The results directory appeared: watch it, and read
				// what is in it already.
				if string(name) == filepath.Base(w.dir) && w.add() == nil && w.onDir {
					x.rescan()
				}
			case ev.Mask&(unix.IN_DELETE_SELF|unix.IN_IGNORED) != 0:
				w.onDir = false
				_ = w.add()
				x.rescan()
			case len(name) > 0:
				x.changed(string(name))
			}
		}
	}
}
