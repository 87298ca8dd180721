//go:build linux

package main

import (
	"context"
	"os"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// resource: service.name ebpfnet unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise, service.instance.id, host.name,
// host.id where the host has one, os.type.
func (s *settings) resource(ctx context.Context) (*resource.Resource, error) {
	// host.id where the host has a machine-id: an image from scratch
	// has none, and that is no reason not to start.
	hostID, err := resource.New(ctx, resource.WithHostID())
	if err != nil {
		hostID = resource.Empty()
	}
	detected, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("ebpfnet")),
		resource.WithAttributes(hostID.Attributes()...),
		resource.WithHost(),
		resource.WithOS(),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last: the environment wins
	)
	if err != nil {
		return nil, err
	}
	if _, ok := detected.Set().Value(semconv.ServiceInstanceIDKey); ok {
		return detected, nil
	}
	return resource.Merge(detected, resource.NewSchemaless(semconv.ServiceInstanceID(instanceID(detected))))
}

// instanceID is a service.instance.id that stays the same across restarts
// of the same instance and differs between instances: a name-based UUID of
// the host (host.id, else host.name) and the network namespace counted in
// (one per host for a DaemonSet on the host network, one per pod for a
// sidecar). Without it, a gateway's Prometheus exporter merges the series
// of every host into one.
func instanceID(res *resource.Resource) string {
	host, ok := res.Set().Value(semconv.HostIDKey)
	if !ok {
		host, _ = res.Set().Value(semconv.HostNameKey)
	}
	netns, _ := os.Readlink("/proc/self/ns/net")
	return uuid.NewSHA1(instanceNamespace, []byte(host.AsString()+"/"+netns)).String()
}

// instanceNamespace is the UUID namespace of ebpfnet's instance IDs.
var instanceNamespace = uuid.MustParse("0b7c5e9a-3f2d-4c61-9d7e-eb9f00000001")
