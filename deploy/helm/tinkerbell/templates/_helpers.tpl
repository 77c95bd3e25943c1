{{/*
Shared pieces of the workloads. The pod that serves HTTP to the machines (boots in perService
mode, the all-in-one `tinkerbell serve` in allInOne mode) is the one that gets DHCP's network
setup (hostNetwork, the macvlan relay) and HookOS.
*/}}

{{/* The image of one of our binaries: <image.repository>/<name>:<tag>. */}}
{{- define "tinkerbell.image" -}}
{{ .root.Values.image.repository }}/{{ .name }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{/* Where HookOS is in the pod that serves it (TINKERBELL_HOOKOS_DIR). */}}
{{- define "tinkerbell.hookosDir" -}}
/var/lib/tinkerbell/hookos
{{- end }}

{{/* The values the chart refuses, said in the operator's terms. */}}
{{- define "tinkerbell.validate" -}}
{{- $mode := .Values.deployment.mode }}
{{- if not (has $mode (list "perService" "allInOne")) }}
{{- fail (printf "deployment.mode is %q: perService or allInOne" $mode) }}
{{- end }}
{{- if and (eq $mode "allInOne") .Values.boots.daemonSet.enabled }}
{{- fail "boots.daemonSet.enabled with deployment.mode=allInOne: `tinkerbell serve` has no leader election, so its controllers must run once; use deployment.mode=perService for a boots DaemonSet" }}
{{- end }}
{{- $h := .Values.optional.hookos }}
{{- if $h.enabled }}
{{- if not (has $h.source (list "image" "url")) }}
{{- fail (printf "optional.hookos.source is %q: image or url" $h.source) }}
{{- end }}
{{- if and (eq $h.source "url") (not $h.downloadURL) }}
{{- fail "optional.hookos.source=url needs optional.hookos.downloadURL (the release URL holding SHA256SUMS)" }}
{{- end }}
{{- if and (eq $mode "perService") (not .Values.boots.enabled) }}
{{- fail "optional.hookos.enabled needs boots.enabled (boots serves HookOS) or deployment.mode=allInOne" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Init containers of the pod that serves the machines: the macvlan relay, the HookOS
download. Renders the `initContainers:` key, or nothing. */}}
{{- define "tinkerbell.machinesInitContainers" -}}
{{- $relay := .Values.boots.dhcpRelay.enabled }}
{{- $fetch := and .Values.optional.hookos.enabled (eq .Values.optional.hookos.source "url") }}
{{- if or $relay $fetch }}
initContainers:
  {{- if $relay }}
  - name: macvlan
    image: {{ .Values.boots.dhcpRelay.image }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    # Create a macvlan on the node's interface and move it into this pod, so the
    # machines' DHCP broadcasts reach boots without host networking.
    command:
      - sh
      - -ec
      - |
        nsenter -t 1 -n -- ip link del tb-dhcp0 2>/dev/null || true
        nsenter -t 1 -n -- ip link add tb-dhcp0 link {{ .Values.boots.dhcpRelay.interface }} type macvlan mode bridge
        nsenter -t 1 -n -- ip link set tb-dhcp0 netns $$
        {{- if .Values.boots.dhcpRelay.address }}
        ip addr add {{ .Values.boots.dhcpRelay.address }} dev tb-dhcp0
        {{- end }}
        ip link set tb-dhcp0 up
    securityContext:
      privileged: true
  {{- end }}
  {{- if $fetch }}
  # HookOS from a release URL: SHA256SUMS, then every file it lists, each checked, into the
  # emptyDir the server container serves (optional.hookos.source=url).
  - name: hookos
    image: {{ include "tinkerbell.image" (dict "root" . "name" "tinkerbell") | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: [hookos, fetch, --url, {{ .Values.optional.hookos.downloadURL | quote }}, --dir, {{ include "tinkerbell.hookosDir" . }}]
    volumeMounts:
      - name: hookos
        mountPath: {{ include "tinkerbell.hookosDir" . }}
    securityContext:
      runAsNonRoot: true
      runAsUser: 65532
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
  {{- end }}
{{- end }}
{{- end }}

{{/* The HookOS env, mount and volume of the container/pod that serves it (list items). */}}
{{- define "tinkerbell.hookosEnv" -}}
{{- if .Values.optional.hookos.enabled }}
# boots serves this directory under /hookos/ and its iPXE scripts download HookOS from there.
- name: TINKERBELL_HOOKOS_DIR
  value: {{ include "tinkerbell.hookosDir" . | quote }}
{{- end }}
{{- end }}

{{- define "tinkerbell.hookosMount" -}}
{{- if .Values.optional.hookos.enabled }}
- name: hookos
  mountPath: {{ include "tinkerbell.hookosDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "tinkerbell.hookosVolume" -}}
{{- if .Values.optional.hookos.enabled }}
{{- if eq .Values.optional.hookos.source "image" }}
# The data-only hookos image (vmlinuz-x86_64, initramfs-x86_64, manifest.txt, SHA256SUMS at
# its root), mounted read-only as an image volume.
- name: hookos
  image:
    reference: {{ .Values.optional.hookos.image | default (include "tinkerbell.image" (dict "root" . "name" "hookos")) | quote }}
    pullPolicy: {{ .Values.optional.hookos.pullPolicy }}
{{- else }}
# Filled by the init container `hookos` (tinkerbell hookos fetch).
- name: hookos
  emptyDir: {}
{{- end }}
{{- end }}
{{- end }}

{{/* Scheduling of a pod: nodeSelector, tolerations, affinity from a values map. */}}
{{- define "tinkerbell.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
