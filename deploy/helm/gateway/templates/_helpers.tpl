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

{{/* Settings the chart owns: set in gateway.extraEnv they would render a second entry
of the same name (or, for GATEWAY_ADMIN_PORT, contradict --admin-port) while the ports,
probes, Services and NetworkPolicy keep the chart's own value. Rendering fails on one,
naming the value to set instead. */}}
{{- define "gateway.checkExtraEnv" -}}
{{- $owned := dict
  "GATEWAY_HOST" "it stays 0.0.0.0, where the probes, the Services and the NetworkPolicy reach it"
  "GATEWAY_PORT" "set gateway.port instead"
  "GATEWAY_ADMIN_PORT" "set gateway.adminPort (0 = no admin listener) instead"
  "GATEWAY_ISSUER_URL" "set gateway.issuerUrl instead"
  "GATEWAY_AUDIENCE" "set gateway.audience instead"
  "GATEWAY_LOG_LEVEL" "set gateway.logLevel instead"
  "GATEWAY_DRAIN_GRACE_S" "set gateway.drainGraceSeconds (terminationGracePeriodSeconds follows it) instead"
  "GATEWAY_LEDGER_SPOOL_DIR" "set gateway.ledgerSpoolSize (the chart mounts the spool) instead"
  "GATEWAY_DATABASE_URL" "set database.secretName and database.secretKey instead"
  "GATEWAY_REDIS_URL" "set redis.secretName and redis.secretKey instead"
  "GATEWAY_POLICY_DIR" "set policies (the chart mounts them) instead"
  "GATEWAY_MIGRATE_ON_START" "set migrations.enabled (the migrate Job runs them) instead"
-}}
{{- if .Values.otlpEndpoint }}
{{- $_ := set $owned "GATEWAY_OTLP_ENDPOINT" "set otlpEndpoint instead" }}
{{- end }}
{{- range $name, $_ := .Values.gateway.extraEnv }}
{{- with get $owned $name }}
{{- fail (printf "gateway.extraEnv.%s: the chart owns %s; %s" $name $name .) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* "true" when the pods should carry the prometheus.io/* annotations: asked for
(metrics.scrapeAnnotations) and a scraper can reach the port they name, i.e. no
NetworkPolicy, or networkPolicy.metricsFrom admits it, or (no admin listener) the teams'
port is open to every peer. Annotations that send Prometheus at a port the policy
closes would only make every scrape time out. */}}
{{- define "gateway.scrapeAnnotations" -}}
{{- $np := .Values.networkPolicy -}}
{{- if and .Values.metrics.scrapeAnnotations (or (not $np.enabled) $np.metricsFrom (and (not .Values.gateway.adminPort) (not $np.ingressFrom))) -}}
true
{{- end -}}
{{- end -}}
