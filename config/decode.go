package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Sentinel errors of Decode.
var (
	ErrUnknownKey = errors.New("unknown key")
	ErrType       = errors.New("wrong type")
)

// KeyError is one problem with one key of the configuration, named as the
// user wrote it (interfaces.include[1]). Decode and Validate return them,
// joined, so that a front end can say where the key came from: a line of a
// file, or a command-line flag.
type KeyError struct {
	Key  string
	Kind error // one of the sentinel errors
	Msg  string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Msg }
func (e *KeyError) Unwrap() error { return e.Kind }

func problem(kind error, key, format string, args ...any) error {
	return &KeyError{Key: key, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// KeyErrors returns the KeyErrors in err (as Decode and Validate join
// them), and the errors that are not KeyErrors.
func KeyErrors(err error) (keyed []*KeyError, other []error) {
	var walk func(error)
	walk = func(err error) {
		var ke *KeyError
		switch {
		case err == nil:
		case errors.As(err, &ke) && ke == err:
			keyed = append(keyed, ke)
		default:
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					walk(e)
				}
				return
			}
			other = append(other, err)
		}
	}
	walk(err)
	return keyed, other
}

// Decode reads a configuration over the defaults from raw: the document as
// YAML decodes it, or as a Collector's confmap holds it (maps with string
// keys, lists, strings and numbers). It is the one decoder of both front
// ends. Every problem is reported at once, each a KeyError naming its key;
// a key that is null keeps its default. It does not Validate.
//
// One default depends on another key: with attach: xdp, which counts
// receive only, directions defaults to [receive].
func Decode(raw map[string]any) (Config, error) {
	c := Default()
	d := decoder{given: map[string]bool{}}
	d.fields("", raw, map[string]func(key string, v any){
		"interfaces": func(key string, v any) {
			d.fields(key, d.mapping(key, v), map[string]func(string, any){
				"include": func(key string, v any) { d.strings(key, v, &c.Interfaces.Include) },
				"exclude": func(key string, v any) { d.strings(key, v, &c.Interfaces.Exclude) },
			})
		},
		"attach":         func(key string, v any) { d.string(key, v, &c.Attach) },
		"directions":     func(key string, v any) { d.strings(key, v, &c.Directions) },
		"pin_path":       func(key string, v any) { d.string(key, v, &c.PinPath) },
		"max_interfaces": func(key string, v any) { d.int(key, v, &c.MaxInterfaces) },
		"split_by":       func(key string, v any) { d.strings(key, v, &c.SplitBy) },
		"metrics": func(key string, v any) {
			schema := map[string]func(string, any){}
			for _, name := range MetricNames {
				schema[name] = func(key string, v any) {
					var m MetricSettings
					d.fields(key, d.mapping(key, v), map[string]func(string, any){
						"enabled": func(key string, v any) {
							var b *bool
							if d.bool(key, v, &b); b != nil {
								m.Enabled = *b
							}
						},
					})
					if _, ok := d.given[key+".enabled"]; !ok {
						m.Enabled = true // a metric named without enabled stays on
					}
					if c.Metrics == nil {
						c.Metrics = map[string]MetricSettings{}
					}
					c.Metrics[name] = m
				}
			}
			m := d.mapping(key, v)
			for name := range m {
				if _, ok := schema[name]; !ok {
					schema[name] = func(key string, _ any) {
						d.errs = append(d.errs, problem(ErrUnknownKey, key, "unknown metric (the metrics are %s)", strings.Join(MetricNames, ", ")))
					}
				}
			}
			d.fields(key, m, schema)
		},
		"pods": func(key string, v any) {
			d.fields(key, d.mapping(key, v), map[string]func(string, any){
				"enabled":       func(key string, v any) { d.bool(key, v, &c.Pods.Enabled) },
				"cni_cache_dir": func(key string, v any) { d.string(key, v, &c.Pods.CNICacheDir) },
			})
		},
	})
	if c.Attach == AttachXDP && !d.given["directions"] {
		c.Directions = []string{DirectionReceive}
	}
	slices.SortStableFunc(d.errs, func(a, b error) int {
		return strings.Compare(a.(*KeyError).Key, b.(*KeyError).Key)
	})
	return c, errors.Join(d.errs...)
}

type decoder struct {
	errs  []error
	given map[string]bool // keys with a value, null or not
}

// fields calls each key's decoder with its value, in the order of the
// schema, and reports the keys the schema does not have.
func (d *decoder) fields(prefix string, m map[string]any, schema map[string]func(key string, v any)) {
	var unknown []string
	for k := range m {
		if schema[k] == nil {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		d.errs = append(d.errs, problem(ErrUnknownKey, join(prefix, k), "unknown key"))
	}
	names := make([]string, 0, len(schema))
	for k := range schema {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if v, ok := m[k]; ok {
			d.given[join(prefix, k)] = true
			if v != nil {
				schema[k](join(prefix, k), v)
			}
		}
	}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func (d *decoder) wrongType(key, want string, v any) {
	d.errs = append(d.errs, problem(ErrType, key, "want %s, got %s", want, describe(v)))
}

func (d *decoder) mapping(key string, v any) map[string]any {
	switch m := v.(type) {
	case map[string]any:
		return m
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			s, ok := k.(string)
			if !ok {
				d.errs = append(d.errs, problem(ErrType, key, "want keys that are names, got %s", describe(k)))
				continue
			}
			out[s] = v
		}
		return out
	}
	d.wrongType(key, "a mapping of keys", v)
	return nil
}

func (d *decoder) string(key string, v any, dst *string) {
	s, ok := v.(string)
	if !ok {
		d.wrongType(key, "a string", v)
		return
	}
	*dst = s
}

func (d *decoder) bool(key string, v any, dst **bool) {
	b, ok := v.(bool)
	if !ok {
		d.wrongType(key, "true or false", v)
		return
	}
	*dst = &b
}

func (d *decoder) strings(key string, v any, dst *[]string) {
	list, ok := v.([]any)
	if !ok {
		if s, ok := v.([]string); ok {
			*dst = append([]string(nil), s...)
			return
		}
		d.wrongType(key, "a list of strings", v)
		return
	}
	out := make([]string, 0, len(list))
	good := true
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			d.wrongType(fmt.Sprintf("%s[%d]", key, i), "a string", e)
			good = false
			continue
		}
		out = append(out, s)
	}
	if good {
		*dst = out
	}
}

func (d *decoder) int(key string, v any, dst *int) {
	var n float64
	switch x := v.(type) {
	case int:
		*dst = x
		return
	case int64:
		n = float64(x)
	case uint64:
		n = float64(x)
	case float64:
		n = x
	default:
		d.wrongType(key, "a whole number", v)
		return
	}
	if n != math.Trunc(n) || math.Abs(n) > math.MaxInt32 {
		d.errs = append(d.errs, problem(ErrType, key, "want a whole number, got %v", v))
		return
	}
	*dst = int(n)
}

// describe names v's type as a YAML user would, with the value.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case int, int64, uint64, float64:
		return fmt.Sprintf("the number %v", x)
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*")
}
