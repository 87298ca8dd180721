//go:build linux

package attach

// rows hands out the counter rows: the lowest free one first, so that the
// used rows stay at the front and a snapshot reads few of them. It only
// keeps the books; the Manager zeroes a row's counters before it is used
// again.
type rows struct {
	used []*attached // by row; nil is free
}

func newRows(n int) rows { return rows{used: make([]*attached, n)} }

// take gives a the lowest free row and returns it, or -1 when every row is
// used.
func (r *rows) take(a *attached) int {
	for i, u := range r.used {
		if u == nil {
			r.used[i] = a
			return i
		}
	}
	return -1
}

// free gives row back.
func (r *rows) free(row uint32) { r.used[row] = nil }

// each calls fn with every used row's interface, in row order.
func (r *rows) each(fn func(*attached)) {
	for _, a := range r.used {
		if a != nil {
			fn(a)
		}
	}
}

// n is how many rows there are.
func (r *rows) n() int { return len(r.used) }
