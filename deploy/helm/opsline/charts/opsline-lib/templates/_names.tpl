{{/*
Names and labels. Helm's named templates are global to a release, so the service
subcharts (siblings of this library under the umbrella chart) include these.
*/}}

{{/* <release>-<component>, within the 63 characters of a DNS label. */}}
{{- define "opsline-lib.fullname" -}}
{{- printf "%s-%s" .Release.Name .Values.component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of a sibling: (list $ "kafka") → <release>-kafka. */}}
{{- define "opsline-lib.sibling" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" $root.Release.Name (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "opsline-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ .Values.component }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "opsline-lib.labels" -}}
{{ include "opsline-lib.selectorLabels" . }}
app.kubernetes.io/part-of: opsline
app.kubernetes.io/component: {{ .Values.role | default "service" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | default .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selects every pod of this release (the services and the bundled stores). */}}
{{- define "opsline-lib.releasePods" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: opsline
{{- end -}}

{{- define "opsline-lib.image" -}}
{{- $img := .Values.global.image -}}
{{- printf "%s:%s" $img.repository ($img.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret with the platform's own secrets (internal and admin tokens, …). */}}
{{- define "opsline-lib.secretName" -}}
{{- .Values.global.secrets.existingSecret | default (printf "%s-platform" .Release.Name) -}}
{{- end -}}

{{/* A storage request: no storageClassName unless one is named (the cluster default). */}}
{{- define "opsline-lib.pvcSpec" -}}
accessModes: {{ toYaml (.accessModes | default (list "ReadWriteOnce")) | nindent 2 }}
{{- with .storageClass }}
storageClassName: {{ . | quote }}
{{- end }}
resources:
  requests:
    storage: {{ .size | quote }}
{{- end -}}
