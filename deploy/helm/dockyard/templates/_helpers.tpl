{{/* Names and labels. */}}
{{- define "dockyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dockyard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dockyard.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dockyard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "dockyard.secretName" -}}
{{ .Values.existingSecret | default (include "dockyard.fullname" .) }}
{{- end -}}

{{- define "dockyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "dockyard.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{- define "dockyard.hasDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret .Values.existingSecret }}true{{ end -}}
{{- end -}}

{{/* Refuse combinations that cannot work, with a message saying what would. */}}
{{- define "dockyard.check" -}}
{{- if not .Values.externalURL -}}
{{- fail "externalURL is required: the URL clients reach the registry at (e.g. https://registry.example.com)" -}}
{{- end -}}
{{- if not (has .Values.storage.driver (list "s3" "filesystem")) -}}
{{- fail (printf "storage.driver must be s3 or filesystem, not %q" .Values.storage.driver) -}}
{{- end -}}
{{- if not (include "dockyard.hasDatabase" .) -}}
{{- if gt (int .Values.serve.replicas) 1 -}}
{{- fail "SQLite (no database.url) allows one registry pod: set serve.replicas 1, or give database.url (PostgreSQL)" -}}
{{- end -}}
{{- if .Values.worker.enabled -}}
{{- fail "worker pods need PostgreSQL: give database.url, or set worker.enabled false (jobs then run in the registry pod)" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.storage.driver "filesystem") (or (gt (int .Values.serve.replicas) 1) .Values.worker.enabled) (not (has "ReadWriteMany" .Values.storage.filesystem.accessModes)) (not .Values.storage.filesystem.existingClaim) -}}
{{- fail "several pods (registry replicas, or worker pods) on the filesystem driver need a ReadWriteMany volume (storage.filesystem.accessModes) or storage.driver s3" -}}
{{- end -}}
{{- if and (eq .Values.storage.driver "s3") (not .Values.storage.s3.bucket) -}}
{{- fail "storage.s3.bucket is required with storage.driver s3" -}}
{{- end -}}
{{- if and (eq .Values.storage.driver "s3") (eq .Values.storage.s3.credentials "static") (not .Values.existingSecret) (not (and .Values.storage.s3.accessKeyId .Values.storage.s3.secretAccessKey)) -}}
{{- fail "storage.s3.credentials static needs storage.s3.accessKeyId and storage.s3.secretAccessKey (or existingSecret)" -}}
{{- end -}}
{{- end -}}

{{/* The settings every Dockyard container gets, as DOCKYARD_* variables. */}}
{{- define "dockyard.env" -}}
- name: DOCKYARD_EXTERNAL_URL
  value: {{ .Values.externalURL | quote }}
{{- if include "dockyard.hasDatabase" . }}
- name: DOCKYARD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | default (include "dockyard.secretName" .) }}
      key: database-url
{{- end }}
- name: DOCKYARD_ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "dockyard.secretName" . }}
      key: admin-password
      optional: true
- name: DOCKYARD_STORAGE_DRIVER
  value: {{ .Values.storage.driver | quote }}
{{- if eq .Values.storage.driver "s3" }}
{{- with .Values.storage.s3 }}
- name: DOCKYARD_STORAGE_S3_BUCKET
  value: {{ .bucket | quote }}
- name: DOCKYARD_STORAGE_S3_PREFIX
  value: {{ .prefix | quote }}
- name: DOCKYARD_STORAGE_S3_REGION
  value: {{ .region | quote }}
- name: DOCKYARD_STORAGE_S3_ENDPOINT
  value: {{ .endpoint | quote }}
- name: DOCKYARD_STORAGE_S3_PATH_STYLE
  value: {{ .pathStyle | quote }}
- name: DOCKYARD_STORAGE_S3_CREDENTIALS
  value: {{ .credentials | quote }}
- name: DOCKYARD_STORAGE_REDIRECT
  value: {{ .redirect | quote }}
{{- end }}
{{- if eq .Values.storage.s3.credentials "static" }}
- name: DOCKYARD_STORAGE_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "dockyard.secretName" . }}
      key: s3-access-key-id
- name: DOCKYARD_STORAGE_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "dockyard.secretName" . }}
      key: s3-secret-access-key
{{- end }}
{{- end }}
{{- if .Values.worker.enabled }}
- name: DOCKYARD_JOB_WORKERS
  value: "0"
{{- end }}
{{- range $name, $value := .Values.settings }}
- name: {{ printf "DOCKYARD_%s" ($name | upper) }}
  value: {{ if kindIs "string" $value }}{{ $value | quote }}{{ else }}{{ $value | toJson | quote }}{{ end }}
{{- end }}
{{- end -}}

{{/* The data volume: the claim with the filesystem driver, else scratch space. */}}
{{- define "dockyard.dataVolume" -}}
- name: data
{{- if eq .Values.storage.driver "filesystem" }}
  persistentVolumeClaim:
    claimName: {{ .Values.storage.filesystem.existingClaim | default (printf "%s-data" (include "dockyard.fullname" .)) }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}
