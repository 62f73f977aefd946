{{/* Names and labels. The names match deploy/kubernetes when the release is `tokend`. */}}
{{- define "tokend.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "tokend" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-tokend" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tokend.selectorLabels" -}}
app.kubernetes.io/name: tokend
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokend.labels" -}}
{{ include "tokend.selectorLabels" . }}
app.kubernetes.io/part-of: tokend
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tokend.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ required "image.tag is required" .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "tokend.issuer" -}}
{{- .Values.issuer | default (printf "http://%s.%s.svc.cluster.local:8080" (include "tokend.fullname" .) .Release.Namespace) -}}
{{- end -}}

{{/* tokend.yaml: the chart's own keys win over .Values.config. */}}
{{- define "tokend.config" -}}
{{- $tlsDir := "/var/run/secrets/tokend/tls" -}}
{{- $auth := dict "method" .Values.vault.auth.method "mount" .Values.vault.auth.mount "role" (required "vault.auth.role is required" .Values.vault.auth.role) "jwt_file" "/var/run/secrets/tokend/vault/token" -}}
{{- $vault := dict "addr" .Values.vault.addr "auth" $auth "transit_mount" .Values.vault.transitMount "key_name" .Values.vault.keyName "algorithm" .Values.vault.algorithm "create_key" false -}}
{{- if .Values.vault.caConfigMap -}}
{{- $_ := set $vault "cacert" "/var/run/secrets/tokend/vault-ca/ca.crt" -}}
{{- end -}}
{{- $owned := dict "grpc_listen" "0.0.0.0:50051" "http_listen" "0.0.0.0:8080" "policy_file" "/etc/tokend/policy.yaml" "audit_log" "-" "vault" $vault -}}
{{- $_ := set $owned "tls" (dict "cert_file" (printf "%s/tls.crt" $tlsDir) "key_file" (printf "%s/tls.key" $tlsDir) "client_ca_file" (printf "%s/ca.crt" $tlsDir)) -}}
{{- $_ := set $owned "tokens" (dict "issuer" (include "tokend.issuer" .)) -}}
{{- if not .Values.store.existingSecret -}}
{{- $_ := set $owned "store_url" .Values.store.url -}}
{{- end -}}
{{- toYaml (mergeOverwrite (deepCopy (.Values.config | default dict)) $owned) -}}
{{- end -}}
