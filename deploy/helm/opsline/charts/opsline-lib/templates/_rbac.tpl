{{/*
Access to the Kubernetes API for a service that needs it (build: kaniko Jobs; deploy:
the objects it applies). Namespaced by default: a Role and RoleBinding in each of
rbac.namespaces (default: the release's). Cluster-scoped objects only when
rbac.clusterWide asks for them.
*/}}
{{- define "opsline-lib.rbac" -}}
{{- if .Values.rbac.create }}
{{- $name := include "opsline-lib.fullname" . }}
{{- $subject := dict "kind" "ServiceAccount" "name" $name "namespace" .Release.Namespace }}
{{- if .Values.rbac.clusterWide }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ printf "%s-%s" .Release.Namespace $name | trunc 63 | trimSuffix "-" }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
rules: {{- toYaml .Values.rbac.rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ printf "%s-%s" .Release.Namespace $name | trunc 63 | trimSuffix "-" }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ printf "%s-%s" .Release.Namespace $name | trunc 63 | trimSuffix "-" }}
subjects: [{{ toJson $subject }}]
{{- else }}
{{- range $ns := .Values.rbac.namespaces | default (list $.Release.Namespace) }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}
  namespace: {{ $ns }}
  labels: {{- include "opsline-lib.labels" $ | nindent 4 }}
rules: {{- toYaml $.Values.rbac.rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ $ns }}
  labels: {{- include "opsline-lib.labels" $ | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects: [{{ toJson $subject }}]
{{- end }}
{{- end }}
{{- if .Values.rbac.inClusterKubeconfig }}
---
# The pod's own service account as a kubeconfig: the services take a kubeconfig file.
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ printf "%s-kubeconfig" $name }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
data:
  kubeconfig: |
    apiVersion: v1
    kind: Config
    clusters:
      - name: in-cluster
        cluster:
          server: https://kubernetes.default.svc
          certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    users:
      - name: {{ $name }}
        user:
          tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
    contexts:
      - name: in-cluster
        context:
          cluster: in-cluster
          user: {{ $name }}
          namespace: {{ first (.Values.rbac.namespaces | default (list .Release.Namespace)) }}
    current-context: in-cluster
{{- end }}
{{- end }}
{{- end -}}
