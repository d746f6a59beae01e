{{- define "stateward.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stateward.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "stateward.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "stateward.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "stateward.tlsSecret" -}}
{{- if eq .Values.certificates.mode "existing" -}}
{{ required "certificates.existing.secretName is required with mode existing" .Values.certificates.existing.secretName }}
{{- else -}}
{{ include "stateward.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{- define "stateward.securityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- /* "true" when the pod webhooks carry CEL matchConditions: asked for in the values and
served by the cluster (beta and on by default in Kubernetes 1.28 and 1.29, GA in 1.30). */ -}}
{{- define "stateward.podMatchConditions" -}}
{{- if and .Values.webhook.podMatchConditions (semverCompare ">=1.28-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end -}}
