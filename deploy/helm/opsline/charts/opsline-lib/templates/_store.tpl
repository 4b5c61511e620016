{{/*
What the bundled stores (kafka, postgresql, elasticsearch subcharts) share: their
Services, their data volume, their generated Secrets and NetworkPolicy.
*/}}

{{/*
A Secret of generated values, stable across upgrades: an existing Secret's values are
looked up and kept (offline renders, such as `helm template`, get fresh ones). Kept on
uninstall too, because the stores' volumes outlive the release and were initialised
with these passwords. (list $ name (dict key fixedValue-or-"")).
*/}}
{{- define "opsline-lib.generatedSecret" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name -}}
{{- $data := dict -}}
{{- if $existing }}{{ $data = $existing.data | default dict }}{{ end -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  labels: {{- include "opsline-lib.labels" $root | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
type: Opaque
data:
  {{- range $key, $fixed := index . 2 }}
  {{ $key }}: {{ index $data $key | default ($fixed | default (randAlphaNum 40) | b64enc) | quote }}
  {{- end }}
{{- end -}}

{{/* A ClusterIP Service for clients and a headless one for the StatefulSet's pod names. */}}
{{- define "opsline-lib.storeServices" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector: {{- include "opsline-lib.selectorLabels" . | nindent 4 }}
  ports:
    - name: client
      port: {{ .Values.port }}
      targetPort: client
---
apiVersion: v1
kind: Service
metadata:
  name: {{ printf "%s-headless" (include "opsline-lib.fullname" .) }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {{- include "opsline-lib.selectorLabels" . | nindent 4 }}
  ports:
    - name: client
      port: {{ .Values.port }}
      targetPort: client
{{- end -}}

{{- define "opsline-lib.storeNetworkPolicy" -}}
{{- if .Values.global.networkPolicy.enabled -}}
{{- $ctx := list . (include "opsline-lib.fullname" .) (include "opsline-lib.selectorLabels" .) (list .Values.port) false -}}
{{- include "opsline-lib.networkPolicy" $ctx -}}
{{- end -}}
{{- end -}}

{{/* The StatefulSet's head: metadata, selector, pod labels. */}}
{{- define "opsline-lib.storeHead" -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
spec:
  serviceName: {{ printf "%s-headless" (include "opsline-lib.fullname" .) }}
  replicas: 1
  podManagementPolicy: Parallel
  selector:
    matchLabels: {{- include "opsline-lib.selectorLabels" . | nindent 6 }}
  {{- if .Values.persistence.enabled }}
  volumeClaimTemplates:
    - metadata:
        name: data
        labels: {{- include "opsline-lib.selectorLabels" . | nindent 10 }}
      spec: {{- include "opsline-lib.pvcSpec" .Values.persistence | nindent 8 }}
  {{- end }}
{{- end -}}

{{/* The data volume when it is not a claim: an emptyDir. */}}
{{- define "opsline-lib.dataVolume" -}}
{{- if not .Values.persistence.enabled -}}
- name: data
  emptyDir: {}
{{- end -}}
{{- end -}}

{{- define "opsline-lib.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
