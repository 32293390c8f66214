{{/* Chart name, overridable. */}}
{{- define "redcast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name; 63 chars max because some Kubernetes name fields
are DNS labels.
*/}}
{{- define "redcast.fullname" -}}
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

{{- define "redcast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: must never change for an installed release. */}}
{{- define "redcast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redcast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "redcast.labels" -}}
helm.sh/chart: {{ include "redcast.chart" . }}
{{ include "redcast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* drain_timeout + margin; see values.yaml. */}}
{{- define "redcast.terminationGracePeriodSeconds" -}}
{{- add (int .Values.drainTimeoutSeconds) (int .Values.terminationGraceMarginSeconds) }}
{{- end }}
