{{/* The chart name, or nameOverride; 63 characters at most, as label values and names allow. */}}
{{- define "bcos-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every resource and of the leader-election Lease: fullnameOverride, or the release name
followed by the chart name unless the release name already contains it (release "bcos-operator"
gives "bcos-operator", not "bcos-operator-bcos-operator").
*/}}
{{- define "bcos-operator.fullname" -}}
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

{{/* The labels that select the operator's pods; they never change after install. */}}
{{- define "bcos-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bcos-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels of every resource. */}}
{{- define "bcos-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bcos-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: bcos
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator's port: /metrics, /healthz and /readyz, fixed by the operator's --http-listen. */}}
{{- define "bcos-operator.httpPort" -}}
8080
{{- end }}
