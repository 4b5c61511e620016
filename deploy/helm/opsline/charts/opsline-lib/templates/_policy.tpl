{{- define "opsline-lib.hpa" -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "opsline-lib.fullname" . }}
  minReplicas: {{ .Values.autoscaling.minReplicas }}
  maxReplicas: {{ .Values.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .Values.autoscaling.targetCPUUtilizationPercentage }}
{{- end -}}

{{/* maxUnavailable, not minAvailable: a single replica can still be drained off a node. */}}
{{- define "opsline-lib.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels: {{- include "opsline-lib.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/*
Ingress to a pod: from this release's pods, from global.networkPolicy.extraIngressFrom
(e.g. the Prometheus namespace), and from anywhere when the service is public (the
gateway). Egress is not restricted.
*/}}
{{- define "opsline-lib.networkPolicy" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $selector := index . 2 -}}
{{- $ports := index . 3 -}}
{{- $public := index . 4 -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  labels: {{- include "opsline-lib.labels" $root | nindent 4 }}
spec:
  podSelector:
    matchLabels: {{- $selector | nindent 6 }}
  policyTypes: ["Ingress"]
  ingress:
    - ports:
        {{- range $ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- if not $public }}
      from:
        - podSelector:
            matchLabels: {{- include "opsline-lib.releasePods" $root | nindent 14 }}
        {{- with $root.Values.global.networkPolicy.extraIngressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
{{- end -}}

{{- define "opsline-lib.serviceNetworkPolicy" -}}
{{- $ctx := list . (include "opsline-lib.fullname" .) (include "opsline-lib.selectorLabels" .) (list .Values.port) .Values.networkPolicy.public -}}
{{- include "opsline-lib.networkPolicy" $ctx -}}
{{- end -}}

{{/* A prometheus-operator ServiceMonitor (a CRD: only with global.serviceMonitor.enabled). */}}
{{- define "opsline-lib.serviceMonitor" -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels:
    {{- include "opsline-lib.labels" . | nindent 4 }}
    {{- with .Values.global.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels: {{- include "opsline-lib.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ .Values.global.serviceMonitor.interval }}
{{- end -}}
