{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "rebootgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already holds the chart's. */}}
{{- define "rebootgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rebootgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rebootgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rebootgate.labels" -}}
{{ include "rebootgate.labelsWith" (dict "root" . "selector" (include "rebootgate.selectorLabels" .)) }}
{{- end }}

{{/* The common labels around the given selector labels. Input: dict "root" . "selector" LABELS. */}}
{{- define "rebootgate.labelsWith" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ .selector }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: rebootgate
{{- end }}

{{/*
The summarizer's names and labels. Its pods must not match the DaemonSet's selector
(name and instance, immutable once installed): a Service or `kubectl -l` meant for the
agents would take them too. So their app.kubernetes.io/name is <name>-summarizer.
*/}}
{{- define "rebootgate.summarizerName" -}}
{{- printf "%s-summarizer" (include "rebootgate.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{- define "rebootgate.summarizerSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-summarizer" (include "rebootgate.name" . | trunc 52 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: summarizer
{{- end }}

{{- define "rebootgate.summarizerLabels" -}}
{{ include "rebootgate.labelsWith" (dict "root" . "selector" (include "rebootgate.summarizerSelectorLabels" .)) }}
{{- end }}

{{- define "rebootgate.summarizerServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rebootgate.summarizerName" .) .Values.summarizer.serviceAccountName }}
{{- else }}
{{- default "default" .Values.summarizer.serviceAccountName }}
{{- end }}
{{- end }}

{{/*
The ConfigMap the summarizer publishes and agents read, and the summarizer's leader
Lease: fixed names in the code (engine/summary, cmd/rebootgate/cli/summarizer.go).
*/}}
{{- define "rebootgate.summaryConfigMap" -}}
rebootgate-node-summary
{{- end }}

{{/* The node index shards' ConfigMaps (rebootgate-node-index-0 to -15: the summarizer
writes at most 16, engine/disruption.MaxIndexShards), as a quoted, comma-separated list
for resourceNames. */}}
{{- define "rebootgate.indexConfigMaps" -}}
{{- range $i, $_ := until 16 }}{{ if $i }}, {{ end }}{{ printf "rebootgate-node-index-%d" $i | quote }}{{ end }}
{{- end }}

{{- define "rebootgate.summarizerLease" -}}
rebootgate-summarizer
{{- end }}

{{/* imagePullSecrets entries (names or objects), for every pod of the chart. */}}
{{- define "rebootgate.imagePullSecrets" -}}
{{- range .Values.image.pullSecrets }}
{{- if kindIs "string" . }}
- name: {{ . }}
{{- else }}
- {{ toYaml . | nindent 2 | trim }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rebootgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rebootgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image: the command method needs nsenter, which only the image variant built from the
Dockerfile's rebootgate-nsenter stage has (tag + image.nsenterTagSuffix); the signal
method runs the distroless image.
*/}}
{{- define "rebootgate.image" -}}
{{- if eq (include "rebootgate.rebootMethod" .) "command" }}
{{- include "rebootgate.nsenterImage" . }}
{{- else }}
{{- include "rebootgate.distrolessImage" . }}
{{- end }}
{{- end }}

{{/* The distroless image (no shell, no nsenter): the signal method and the summarizer. */}}
{{- define "rebootgate.distrolessImage" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The nsenter variant of the image (Debian slim): tag + image.nsenterTagSuffix. */}}
{{- define "rebootgate.nsenterImage" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- printf "%s:%s%s" .Values.image.repository $tag (.Values.image.nsenterTagSuffix | default "") }}
{{- end }}

{{/*
The configuration keys whose flags make the agent's default pool and blockers; the
agent refuses them together with --config (one source of truth).
*/}}
{{- define "rebootgate.scheduleKeys" -}}
{{- list "concurrency" "rebootDays" "startTime" "endTime" "timeZone" "blockingPodSelector" "alertFilterRegexp" "alertFilterMatchOnly" "alertFiringOnly" | toJson }}
{{- end }}

{{/* The reboot method, which also selects the security mode: command or signal. */}}
{{- define "rebootgate.rebootMethod" -}}
{{- .Values.configuration.rebootMethod | default "command" }}
{{- end }}

{{/*
kured's chart flags, in kured's order: configuration.<camelCase> renders --<kebab-case>.
rebootSentinel, useRebootSentinelHostPath, metricsPort and rebootMethod are handled
separately (the sentinel mount, the probes' port, the security mode), and so are
notifyUrl and slackHookUrl: they carry tokens, so they go into a Secret, not the args
(see rebootgate.notifyURLs).
*/}}
{{- define "rebootgate.kuredFlags" -}}
{{- list
  "period" "dsNamespace" "dsName" "lockAnnotation" "lockTtl" "lockReleaseDelay" "concurrency" "kuredLock"
  "rebootDays" "startTime" "endTime" "timeZone"
  "blockingPodSelector" "prometheusUrl" "alertFilterRegexp" "alertFilterMatchOnly" "alertFiringOnly"
  "drainGracePeriod" "drainTimeout" "drainPodSelector" "skipWaitForDeleteTimeout" "drainDelay" "forceReboot"
  "rebootSentinelCommand" "rebootCommand" "rebootSignal" "rebootDelay"
  "annotateNodes" "preRebootNodeLabels" "postRebootNodeLabels" "preferNoScheduleTaint"
  "slackUsername" "slackChannel" "messageTemplateDrain" "messageTemplateReboot" "messageTemplateUncordon"
  "metricsHost" "logFormat" | toJson }}
{{- end }}

{{/* camelCase → kebab-case: prometheusUrl → prometheus-url. */}}
{{- define "rebootgate.kebab" -}}
{{- regexReplaceAll "([a-z0-9])([A-Z])" . "${1}-${2}" | lower }}
{{- end }}

{{/*
One flag as kured's chart renders it: a list repeats the flag; a bool renders
--flag=true only when true (kured's flags all default to false); a string or number
renders when non-empty and non-zero, so the agent's default applies otherwise.
Input: dict "flag" "name" "value" v.
*/}}
{{- define "rebootgate.flag" -}}
{{- $v := .value }}
{{- if kindIs "slice" $v }}
{{- range $v }}
- {{ printf "--%s=%v" $.flag . | quote }}
{{- end }}
{{- else if kindIs "bool" $v }}
{{- if $v }}
- {{ printf "--%s=true" .flag | quote }}
{{- end }}
{{- else if kindIs "string" $v }}
{{- if ne $v "" }}
- {{ printf "--%s=%s" .flag $v | quote }}
{{- end }}
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) }}
{{- if ne (toString $v) "0" }}
- {{ printf "--%s=%v" .flag $v | quote }}
{{- end }}
{{- else if not (kindIs "invalid" $v) }}
- {{ printf "--%s=%v" .flag $v | quote }}
{{- end }}
{{- end }}

{{/* The sentinel file the agent watches (inside the container). */}}
{{- define "rebootgate.sentinelPath" -}}
{{- $s := .Values.configuration.rebootSentinel | default "/var/run/reboot-required" }}
{{- if .Values.configuration.useRebootSentinelHostPath }}
{{- printf "/sentinel/%s" (base $s) }}
{{- else }}
{{- $s }}
{{- end }}
{{- end }}

{{/*
--config on the mounted config ConfigMap (see rebootgate.configVolume), when config is
set: the agents and the summarizer read the same file (the summarizer places nodes in
pools with its selectors).
*/}}
{{- define "rebootgate.configArg" -}}
{{- if .Values.config }}
- "--config=/etc/rebootgate/config.yaml"
{{- end }}
{{- end }}

{{/* The config ConfigMap's volume mount and volume (one list item each), when config is set. */}}
{{- define "rebootgate.configVolumeMount" -}}
{{- if .Values.config }}
- name: config
  mountPath: /etc/rebootgate
  readOnly: true
{{- end }}
{{- end }}

{{- define "rebootgate.configVolume" -}}
{{- if .Values.config }}
- name: config
  configMap:
    name: {{ include "rebootgate.fullname" . }}-config
{{- end }}
{{- end }}

{{/*
--policy-namespace for each of policyNamespaces, then the pod's own namespace (the
default when the flag is absent, so it is named only beside others).
*/}}
{{- define "rebootgate.policyNamespaceArgs" -}}
{{- range .Values.policyNamespaces }}
- {{ printf "--policy-namespace=%s" . | quote }}
{{- end }}
{{- if .Values.policyNamespaces }}
- "--policy-namespace=$(POD_NAMESPACE)"
{{- end }}
{{- end }}

{{/* The agent's arguments. */}}
{{- define "rebootgate.args" -}}
- agent
- {{ printf "--reboot-method=%s" (include "rebootgate.rebootMethod" .) | quote }}
- {{ printf "--reboot-sentinel=%s" (include "rebootgate.sentinelPath" .) | quote }}
- {{ printf "--metrics-port=%v" .Values.configuration.metricsPort | quote }}
{{- include "rebootgate.configArg" . }}
{{- if include "rebootgate.notifyHasURLFile" . }}
- {{ printf "--notify-url-file=%s" (include "rebootgate.notifyURLFile" .) | quote }}
{{- end }}
{{- include "rebootgate.policyNamespaceArgs" . }}
{{- if .Values.dryRun }}
- "--dry-run=true"
{{- end }}
{{- if and .Values.logLevel (ne .Values.logLevel "info") }}
- {{ printf "--log-level=%s" .Values.logLevel | quote }}
{{- end }}
{{- $c := .Values.configuration }}
{{- range include "rebootgate.kuredFlags" . | fromJsonArray }}
{{- if hasKey $c . }}
{{- include "rebootgate.flag" (dict "flag" (include "rebootgate.kebab" .) "value" (get $c .)) }}
{{- end }}
{{- end }}
{{- include "rebootgate.extraArgs" .Values.extraArgs }}
{{- end }}

{{/*
More flags from a map {flag-name: value}, as kured's chart takes extraArgs: true/false
render --flag=true|false, null or "" renders --flag, a list repeats it. Input: the map.
*/}}
{{- define "rebootgate.extraArgs" -}}
{{- range $k, $v := . }}
{{- if kindIs "slice" $v }}
{{- range $v }}
- {{ printf "--%s=%v" $k . | quote }}
{{- end }}
{{- else if kindIs "bool" $v }}
- {{ printf "--%s=%t" $k $v | quote }}
{{- else if or (kindIs "invalid" $v) (eq (toString $v) "") }}
- {{ printf "--%s" $k | quote }}
{{- else }}
- {{ printf "--%s=%v" $k $v | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The summarizer's arguments: the agents' config and policy namespaces, so it places nodes in the same pools. */}}
{{- define "rebootgate.summarizerArgs" -}}
- summarizer
- "--leader-elect=true"
- {{ printf "--medik8s-namespace=%s" .Values.summarizer.medik8sNamespace | quote }}
- {{ printf "--health-address=:%d" (int .Values.summarizer.healthPort) | quote }}
{{- include "rebootgate.configArg" . }}
{{- include "rebootgate.policyNamespaceArgs" . }}
{{- if and .Values.logLevel (ne .Values.logLevel "info") }}
- {{ printf "--log-level=%s" .Values.logLevel | quote }}
{{- end }}
{{- include "rebootgate.flag" (dict "flag" "log-format" "value" .Values.configuration.logFormat) }}
{{- include "rebootgate.extraArgs" .Values.summarizer.extraArgs }}
{{- end }}

{{/* The container's securityContext for the reboot method, with the user's overrides. */}}
{{- define "rebootgate.containerSecurityContext" -}}
{{- $base := dict }}
{{- if eq (include "rebootgate.rebootMethod" .) "signal" }}
{{- $base = dict "privileged" false "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "runAsUser" 0 "runAsNonRoot" false "capabilities" (dict "drop" (list "ALL") "add" (list "KILL")) "seccompProfile" (dict "type" "RuntimeDefault") }}
{{- else }}
{{- $base = dict "privileged" true "readOnlyRootFilesystem" true "runAsUser" 0 "runAsNonRoot" false }}
{{- end }}
{{- toYaml (mergeOverwrite $base (deepCopy .Values.containerSecurityContext)) }}
{{- end }}

{{/*
Whether extraEnvVars sets the env variable named by .name ("true" or ""): kured's
KURED_NOTIFY_URL and KURED_SLACK_HOOK_URL win over configuration.notifyUrl and
slackHookUrl, as in kured. Input: dict "root" . "name" NAME.
*/}}
{{- define "rebootgate.extraEnvSets" -}}
{{- range .root.Values.extraEnvVars }}{{ if eq .name $.name }}true{{ end }}{{ end }}
{{- end }}

{{/* configuration.slackHookUrl unless extraEnvVars sets KURED_SLACK_HOOK_URL. */}}
{{- define "rebootgate.slackHookURL" -}}
{{- if not (include "rebootgate.extraEnvSets" (dict "root" . "name" "KURED_SLACK_HOOK_URL")) }}
{{- .Values.configuration.slackHookUrl }}
{{- end }}
{{- end }}

{{/*
The notification URLs the chart puts into its Secret (key "urls", one per line):
kured's configuration.notifyUrl (unless extraEnvVars sets KURED_NOTIFY_URL), then
notify.urls. JSON list.
*/}}
{{- define "rebootgate.notifyURLs" -}}
{{- $urls := list }}
{{- if not (include "rebootgate.extraEnvSets" (dict "root" . "name" "KURED_NOTIFY_URL")) }}
{{- with .Values.configuration.notifyUrl }}
{{- $urls = append $urls . }}
{{- end }}
{{- end }}
{{- range .Values.notify.urls }}
{{- $urls = append $urls . }}
{{- end }}
{{- toJson $urls }}
{{- end }}

{{/*
The Secret the agent reads its notification URLs from ("" when none): the user's
notify.existingSecret, or <fullname>-notify, which the chart creates from
configuration.notifyUrl, configuration.slackHookUrl and notify.urls.
*/}}
{{- define "rebootgate.notifySecret" -}}
{{- if .Values.notify.existingSecret }}
{{- .Values.notify.existingSecret }}
{{- else if or (include "rebootgate.notifyURLs" . | fromJsonArray) (include "rebootgate.slackHookURL" .) }}
{{- printf "%s-notify" (include "rebootgate.fullname" .) }}
{{- end }}
{{- end }}

{{/* Where the agent reads the URL file of the notify Secret. */}}
{{- define "rebootgate.notifyURLFile" -}}
/etc/rebootgate-notify/urls
{{- end }}

{{/*
Whether the agent reads --notify-url-file: with notify.existingSecret, or when the
chart's Secret has URLs ("true" or "").
*/}}
{{- define "rebootgate.notifyHasURLFile" -}}
{{- if or .Values.notify.existingSecret (include "rebootgate.notifyURLs" . | fromJsonArray) }}true{{ end }}
{{- end }}

{{/*
Whether the sentinel mirror runs ("true" or ""): in signal mode with the sentinel's host
directory mounted, the root agent must not see that directory (host /var/run = /run
holds the containerd, D-Bus and systemd sockets, which a root process reaches whatever
the mount's readOnly says), so a non-root container without capabilities watches it and
mirrors the sentinel into a memory emptyDir the agent watches.
*/}}
{{- define "rebootgate.sentinelMirror" -}}
{{- if and (eq (include "rebootgate.rebootMethod" .) "signal") .Values.configuration.useRebootSentinelHostPath }}true{{ end }}
{{- end }}

{{/* The sentinel mirror's image: sentinelMirror.image, else the nsenter variant (Debian slim, which has sh). */}}
{{- define "rebootgate.sentinelMirrorImage" -}}
{{- .Values.sentinelMirror.image | default (include "rebootgate.nsenterImage" .) }}
{{- end }}

{{/* The agent's ValidatingAdmissionPolicy and its binding (cluster-scoped: one per release). */}}
{{- define "rebootgate.admissionPolicyName" -}}
{{- printf "%s-agent" (include "rebootgate.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}
