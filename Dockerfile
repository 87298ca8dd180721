# The sidecar's image: a static binary and nothing else, running as nobody.
# Run it with only the capabilities it needs, and a seccomp profile that
# lets bpf() through with CAP_BPF (runtimes' defaults want CAP_SYS_ADMIN):
#
#   docker run --network host --cap-drop=ALL --cap-add=BPF --cap-add=NET_ADMIN \
#     --security-opt seccomp=examples/container/seccomp.json IMAGE
#
# make image builds the same image without a registry (buildah, from scratch).
FROM golang:1.26 AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -tags grpcnotrace -ldflags "-X github.com/ebpfnet/ebpfnet/internal/version.Version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" -o /ebpfnet ./cmd/ebpfnet

FROM scratch
COPY --from=build /ebpfnet /ebpfnet
USER 65534:65534
ENTRYPOINT ["/ebpfnet"]
