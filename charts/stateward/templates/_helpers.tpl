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

{{- /* "true" when the webhook entries carry their CEL matchConditions: asked for in the
values and served by the cluster (beta and on by default in Kubernetes 1.28 and 1.29, GA in
1.30). */ -}}
{{- define "stateward.matchConditions" -}}
{{- if and .Values.webhook.matchConditions (semverCompare ">=1.28-0" .Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end -}}

{{- /* The policy text the release installs. */ -}}
{{- define "stateward.policyText" -}}
{{- if .Values.policy.inline -}}
{{- .Values.policy.inline -}}
{{- else -}}
{{- .Files.Get (printf "files/%s.yaml" .Values.policy.profile) -}}
{{- end -}}
{{- end -}}

{{- /* The webhook entries for the policy in use (YAML), refused when they were made for
another policy text. */ -}}
{{- define "stateward.webhookScope" -}}
{{- $scope := dict -}}
{{- if .Values.policy.inline -}}
{{- $scope = .Values.webhook.scope | default dict -}}
{{- if not $scope.entries -}}
{{- fail "policy.inline needs webhook.scope, the webhook entries derived from that policy: run stateward policy webhooks --policy FILE --values > values-policy.yaml and install with -f values-policy.yaml (it sets both)" -}}
{{- end -}}
{{- else -}}
{{- $file := printf "files/webhooks-%s.yaml" .Values.policy.profile -}}
{{- $scope = .Files.Get $file | fromYaml -}}
{{- if not $scope.entries -}}
{{- fail (printf "policy.profile %q: the chart has no %s" .Values.policy.profile $file) -}}
{{- end -}}
{{- end -}}
{{- $text := include "stateward.policyText" . -}}
{{- if ne (sha256sum $text) ($scope.policyDigest | default "") -}}
{{- fail "webhook.scope was made for another policy text than the one installed: run stateward policy webhooks --policy FILE --values again for the policy you install" -}}
{{- end -}}
{{- toYaml $scope -}}
{{- end -}}
