package main

import (
	"regexp"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// mountIn is container name's mount on path in spec, to change, or nil.
func mountIn(spec *corev1.PodSpec, name, path string) *corev1.VolumeMount {
	for i := range spec.Containers {
		if c := &spec.Containers[i]; c.Name == name {
			for j := range c.VolumeMounts {
				if c.VolumeMounts[j].MountPath == path {
					return &c.VolumeMounts[j]
				}
			}
		}
	}
	return nil
}

// volumeIn is spec's volume name, to change, or nil.
func volumeIn(spec *corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	panic("unreachable")
}

func mountOf(t *testing.T, c corev1.Container, path string) corev1.VolumeMount {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m
		}
	}
	t.Fatalf("container %s mounts nothing on %s", c.Name, path)
	panic("unreachable")
}

func volume(t *testing.T, spec corev1.PodSpec, m corev1.VolumeMount) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == m.Name {
			return v
		}
	}
	t.Fatalf("no volume %s", m.Name)
	panic("unreachable")
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// envOf is the container's environment as Kubernetes gives it: values
// from the downward API's fields as given (absent: the field's path), and
// $(NAME) replaced by the variables defined before it.
func envOf(t *testing.T, c corev1.Container, downward map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = envRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := out[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref
			})
		case e.ValueFrom.FieldRef != nil:
			v, ok := downward[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				v = e.ValueFrom.FieldRef.FieldPath
			}
			out[e.Name] = v
		default:
			t.Fatalf("container %s: %s comes from %+v, which this test cannot give", c.Name, e.Name, e.ValueFrom)
		}
	}
	return out
}
