{{/* Names, labels, images and Secret handling shared by every template. */}}

{{- define "tp4.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object's name: "tp4" for `helm install tp4 charts/tp4`. */}}
{{- define "tp4.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "tp4.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. Call with (dict "root" $ "component" "mlflow"). */}}
{{- define "tp4.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "tp4.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: tp4
{{- end -}}

{{/* The labels a Service or a workload selects its pods by. */}}
{{- define "tp4.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tp4.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference: repository:tag, or repository:tag@digest when a digest is pinned. */}}
{{- define "tp4.image" -}}
{{- $ref := printf "%s:%s" .repository (toString .tag) -}}
{{- if .digest -}}{{- $ref = printf "%s@%s" $ref .digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* Component names. */}}
{{- define "tp4.mlflow.fullname" -}}{{ include "tp4.fullname" . }}-mlflow{{- end -}}
{{- define "tp4.postgres.fullname" -}}{{ include "tp4.fullname" . }}-postgres{{- end -}}
{{- define "tp4.minio.fullname" -}}{{ include "tp4.fullname" . }}-minio{{- end -}}
{{- define "tp4.controller.fullname" -}}{{ include "tp4.fullname" . }}-controller{{- end -}}

{{/* Secret names: the user's existing Secret, or the one this chart generates. */}}
{{- define "tp4.postgres.secretName" -}}
{{- default (printf "%s-postgres" (include "tp4.fullname" .)) .Values.postgres.existingSecret -}}
{{- end -}}
{{- define "tp4.s3.secretName" -}}
{{- default (printf "%s-s3" (include "tp4.fullname" .)) .Values.objectStore.existingSecret -}}
{{- end -}}
{{- define "tp4.mlflowAuth.secretName" -}}
{{- default (printf "%s-mlflow-auth" (include "tp4.fullname" .)) .Values.mlflow.auth.existingSecret -}}
{{- end -}}

{{/* In-cluster URLs. */}}
{{- define "tp4.postgres.host" -}}
{{- if .Values.postgres.enabled -}}{{ include "tp4.postgres.fullname" . }}{{- else -}}{{ .Values.postgres.external.host }}{{- end -}}
{{- end -}}
{{- define "tp4.postgres.port" -}}
{{- if .Values.postgres.enabled -}}5432{{- else -}}{{ .Values.postgres.external.port }}{{- end -}}
{{- end -}}
{{- define "tp4.s3.endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s:%d" (include "tp4.minio.fullname" .) (int .Values.minio.port) -}}
{{- else -}}
{{- .Values.objectStore.externalEndpoint -}}
{{- end -}}
{{- end -}}
{{- define "tp4.mlflow.url" -}}
{{- printf "http://%s:%d" (include "tp4.mlflow.fullname" .) (int .Values.mlflow.service.port) -}}
{{- end -}}

{{/*
A value kept in an existing Secret, else a new random one: the Secret is generated at the first
install and the same values are kept on every upgrade (lookup reads the live object; `helm template`
and `--dry-run` have no cluster, so they show a fresh random value).
Call with (dict "root" $ "secret" NAME "key" KEY "length" N). Returns the base64 value.
*/}}
{{- define "tp4.secretValue" -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $live $live.data (hasKey $live.data .key) -}}
{{- index $live.data .key -}}
{{- else -}}
{{- randAlphaNum (int .length) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The pod-level security context: the chart's, with this component's uid/gid. Call with (dict "root" $ "uid" N). */}}
{{- define "tp4.podSecurityContext" -}}
{{- $context := deepCopy .root.Values.podSecurityContext -}}
{{- $_ := set $context "runAsUser" (int .uid) -}}
{{- $_ := set $context "runAsGroup" (int .uid) -}}
{{- $_ := set $context "fsGroup" (int .uid) -}}
{{- toYaml $context -}}
{{- end -}}

{{/* Where MLflow's clients log: the in-cluster URL and, when auth is on, credentials from the Secret. */}}
{{- define "tp4.mlflowClientEnv" -}}
- name: MLFLOW_TRACKING_URI
  value: {{ include "tp4.mlflow.url" . | quote }}
{{- if .Values.mlflow.auth.enabled }}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "tp4.mlflowAuth.secretName" . }}
      key: MLFLOW_TRACKING_USERNAME
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "tp4.mlflowAuth.secretName" . }}
      key: MLFLOW_TRACKING_PASSWORD
{{- end }}
{{- end -}}

{{/* S3 endpoint, region and keys (from the Secret) for boto3 clients. */}}
{{- define "tp4.s3ClientEnv" -}}
- name: AWS_ENDPOINT_URL
  value: {{ include "tp4.s3.endpoint" . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.objectStore.region | quote }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "tp4.s3.secretName" . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "tp4.s3.secretName" . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end -}}

{{/* Checks of value combinations that the JSON schema cannot express. */}}
{{- define "tp4.validate" -}}
{{- if and (not .Values.minio.enabled) (not .Values.objectStore.externalEndpoint) -}}
{{- fail "minio.enabled=false needs objectStore.externalEndpoint (an S3 endpoint URL)" -}}
{{- end -}}
{{- if and (not .Values.minio.enabled) (not .Values.objectStore.existingSecret) -}}
{{- fail "an external S3 store (minio.enabled=false) needs objectStore.existingSecret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" -}}
{{- end -}}
{{- if and (not .Values.postgres.enabled) (not .Values.postgres.external.host) -}}
{{- fail "postgres.enabled=false needs postgres.external.host" -}}
{{- end -}}
{{- if and (not .Values.postgres.enabled) (not .Values.postgres.existingSecret) -}}
{{- fail "an external Postgres (postgres.enabled=false) needs postgres.existingSecret with POSTGRES_PASSWORD" -}}
{{- end -}}
{{- end -}}
