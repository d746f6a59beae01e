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

{{- /* Where the rules run: webhook, hybrid or native. auto: hybrid where the cluster serves
ValidatingAdmissionPolicy v1 (Kubernetes 1.30+), webhook elsewhere. */ -}}
{{- define "stateward.enforcement" -}}
{{- $mode := .Values.enforcement | default "auto" -}}
{{- $served := .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy" -}}
{{- if eq $mode "auto" -}}
{{- if $served }}hybrid{{ else }}webhook{{ end -}}
{{- else if and (ne $mode "webhook") (not $served) -}}
{{- fail (printf "enforcement %s needs ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, Kubernetes 1.30+), which this cluster does not serve: use enforcement=webhook" $mode) -}}
{{- else -}}
{{- $mode -}}
{{- end -}}
{{- end -}}

{{- /* Checks that generated data was made for the policy text installed. */ -}}
{{- define "stateward.checkDigest" -}}
{{- if ne (sha256sum (include "stateward.policyText" .root)) (.data.policyDigest | default "") -}}
{{- fail (printf "%s was made for another policy text than the one installed: run stateward policy webhooks --policy FILE --values again for the policy you install" .what) -}}
{{- end -}}
{{- end -}}

{{- /* The webhook entries for the policy in use and the enforcement mode (YAML), refused
when they were made for another policy text. */ -}}
{{- define "stateward.webhookScope" -}}
{{- $hybrid := eq (include "stateward.enforcement" .) "hybrid" -}}
{{- $scope := dict -}}
{{- $what := ternary "webhook.hybridScope" "webhook.scope" $hybrid -}}
{{- if .Values.policy.inline -}}
{{- $scope = (ternary .Values.webhook.hybridScope .Values.webhook.scope $hybrid) | default dict -}}
{{- if not $scope.entries -}}
{{- fail (printf "policy.inline needs %s, the webhook entries derived from that policy: run stateward policy webhooks --policy FILE --values > values-policy.yaml and install with -f values-policy.yaml (it sets both)" $what) -}}
{{- end -}}
{{- else -}}
{{- $file := printf "files/webhooks-%s%s.yaml" .Values.policy.profile (ternary "-hybrid" "" $hybrid) -}}
{{- $scope = .Files.Get $file | fromYaml -}}
{{- if not $scope.entries -}}
{{- fail (printf "policy.profile %q: the chart has no %s" .Values.policy.profile $file) -}}
{{- end -}}
{{- end -}}
{{- include "stateward.checkDigest" (dict "root" . "data" $scope "what" $what) -}}
{{- toYaml $scope -}}
{{- end -}}

{{- /* The native policies for the policy in use (YAML: native, notNative, objects). */ -}}
{{- define "stateward.nativeSet" -}}
{{- $set := dict -}}
{{- if .Values.policy.inline -}}
{{- $set = .Values.native | default dict -}}
{{- if not $set.policyDigest -}}
{{- fail "policy.inline needs native, the native policies derived from that policy: run stateward policy webhooks --policy FILE --values > values-policy.yaml and install with -f values-policy.yaml (it sets both)" -}}
{{- end -}}
{{- else -}}
{{- $set = .Files.Get (printf "files/native-%s.yaml" .Values.policy.profile) | fromYaml -}}
{{- end -}}
{{- include "stateward.checkDigest" (dict "root" . "data" $set "what" "native") -}}
{{- toYaml $set -}}
{{- end -}}

{{- /* What every webhook entry shares. */ -}}
{{- define "stateward.webhookCommon" -}}
admissionReviewVersions: [v1]
sideEffects: None
timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
matchPolicy: Equivalent
clientConfig:
  service:
    name: {{ include "stateward.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
  {{- if .caBundle }}
  caBundle: {{ .caBundle }}
  {{- end }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- toYaml .excluded | nindent 8 }}
{{- end -}}
