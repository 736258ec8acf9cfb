{{/* The release's resource name. */}}
{{- define "gateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The serving pods: what the Deployment, Services, PDB and spread select. The migrate
Job's pods must not carry both (gateway.migrateLabels), or they would count as replicas.
Never change it: a Deployment's selector is immutable, so `helm upgrade` would fail. */}}
{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every pod of the release, serving or migrating: what the NetworkPolicy limits. */}}
{{- define "gateway.podFamilyLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
{{- end -}}

{{/* The migrate Job's pods: of the family, without the serving pods' name. */}}
{{- define "gateway.migrateLabels" -}}
{{ include "gateway.podFamilyLabels" . }}
app.kubernetes.io/component: migrate
{{- end -}}

{{- define "gateway.labels" -}}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* The port Prometheus scrapes /metrics on: the admin listener's when there is one. */ -}}
{{- define "gateway.metricsPort" -}}
{{- if .Values.gateway.adminPort }}{{ .Values.gateway.adminPort }}{{ else }}{{ .Values.gateway.port }}{{ end }}
{{- end }}

{{- define "gateway.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Settings every gateway container gets: the secrets by reference, the basics. */}}
{{- define "gateway.env" -}}
- name: GATEWAY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.secretName }}
      key: {{ .Values.database.secretKey }}
- name: GATEWAY_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.secretName }}
      key: {{ .Values.redis.secretKey }}
- name: GATEWAY_POLICY_DIR
  value: /etc/gateway/policies
- name: GATEWAY_MIGRATE_ON_START
  value: "false"
- name: GATEWAY_LOG_LEVEL
  value: {{ .Values.gateway.logLevel | quote }}
{{- with .Values.otlpEndpoint }}
- name: GATEWAY_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "gateway.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "gateway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
