{{/*
The release's objects are named after this: the release's name if it
contains the chart's, else <release>-<chart>, or fullnameOverride. With the
release "ebpfnet" the names are those of examples/kubernetes/.
*/}}
{{- define "ebpfnet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ebpfnet.seccompName" -}}
{{- printf "%s-seccomp" (include "ebpfnet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ebpfnet.collectorName" -}}
{{- printf "otelcol-%s-agent" (include "ebpfnet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ebpfnet.gatewayName" -}}
{{- printf "%s-gateway" (include "ebpfnet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* An image reference from {repository, tag}. */}}
{{- define "ebpfnet.image" -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}

{{/*
The OTLP endpoint the agents send to: exporter.otlpEndpoint, else the
gateway's Service; with scheme "http://" (the sidecar) or without (the
collector's otlp_grpc exporter), as the examples have it. Call with
(dict "root" $ "scheme" "http://").
*/}}
{{- define "ebpfnet.otlpEndpoint" -}}
{{- $root := .root -}}
{{- if $root.Values.exporter.otlpEndpoint -}}
{{- $root.Values.exporter.otlpEndpoint -}}
{{- else if $root.Values.gateway.enabled -}}
{{- printf "%s%s.%s.svc:4317" .scheme (include "ebpfnet.gatewayName" $root) $root.Release.Namespace -}}
{{- else -}}
{{- fail "gateway.enabled is false: set exporter.otlpEndpoint to where the agents send OTLP (or, in sidecar mode, take otlp out of exporter.metricsExporter)" -}}
{{- end -}}
{{- end -}}

{{/*
The init container that copies the seccomp profile from the ConfigMap
into the kubelet's seccomp directory, as ebpfnet.json (the name the
counting containers' Localhost profile gives). uid 0 without any
capability: the directory is root's.
*/}}
{{- define "ebpfnet.seccompInstaller" -}}
- name: seccomp-profile
  image: {{ include "ebpfnet.image" .Values.seccomp.installer.image }}
  {{- with .Values.seccomp.installer.image.pullPolicy }}
  imagePullPolicy: {{ . }}
  {{- end }}
  command: ["cp", "/profile/ebpfnet.json", "/seccomp/ebpfnet.json"]
  securityContext:
    runAsUser: 0
    runAsGroup: 0
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  {{- with .Values.seccomp.installer.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - {name: seccomp-profile, mountPath: /profile, readOnly: true}
    - {name: kubelet-seccomp, mountPath: /seccomp}
{{- end -}}

{{/* The init container's volumes. */}}
{{- define "ebpfnet.seccompVolumes" -}}
- name: seccomp-profile
  configMap: {name: {{ include "ebpfnet.seccompName" . }}}
- name: kubelet-seccomp
  hostPath: {path: {{ .Values.seccomp.kubeletDir | quote }}, type: DirectoryOrCreate}
{{- end -}}

{{/*
The counting containers' security context: uid 0 (Kubernetes gives added
capabilities to uid 0 alone), CAP_BPF and CAP_NET_ADMIN and nothing else,
not privileged, no privilege escalation, a read-only root, the seccomp
profile that allows bpf() under CAP_BPF. Not configurable.
*/}}
{{- define "ebpfnet.countingSecurityContext" -}}
runAsUser: 0
runAsGroup: 0
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
  add: ["BPF", "NET_ADMIN"]
seccompProfile:
  type: Localhost
  localhostProfile: ebpfnet.json
{{- end -}}

{{/*
Pod attribution's mounts in the counting container, with pods.enabled:
the node's CNI result cache at /var/lib/cni (where both agents read it
by default, so neither needs telling), and the network namespaces'
directory at the same path as on the node (the agents open the paths the
cached results give), HostToContainer so that namespaces made after the
pod started are seen. Both read-only.
*/}}
{{- define "ebpfnet.podsMounts" -}}
- {name: cni-cache, mountPath: /var/lib/cni, readOnly: true}
- {name: netns, mountPath: {{ .Values.pods.netnsDir | quote }}, readOnly: true, mountPropagation: HostToContainer}
{{- end -}}

{{/*
Their volumes. type "": the kubelet checks nothing, so a node without
the directories still starts the pod (containerd and CRI-O create them
empty), and the agents attribute nothing until the runtime writes there.
*/}}
{{- define "ebpfnet.podsVolumes" -}}
- name: cni-cache
  hostPath: {path: {{ .Values.pods.cniCacheDir | quote }}, type: ""}
- name: netns
  hostPath: {path: {{ .Values.pods.netnsDir | quote }}, type: ""}
{{- end -}}
