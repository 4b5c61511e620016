{{/*
One opsline service: ServiceAccount, Deployment, Service, HPA, PDB, NetworkPolicy,
ServiceMonitor and RBAC. A service subchart's only template includes this.
*/}}
{{- define "opsline-lib.service" -}}
{{- if .Values.enabled }}
{{ include "opsline-lib.serviceAccount" . }}
---
{{ include "opsline-lib.deployment" . }}
---
{{ include "opsline-lib.k8sService" . }}
{{- if .Values.autoscaling.enabled }}
---
{{ include "opsline-lib.hpa" . }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
---
{{ include "opsline-lib.pdb" . }}
{{- end }}
{{- if (.Values.ingress | default dict).enabled }}
---
{{ include "opsline-lib.ingress" . }}
{{- end }}
{{- if .Values.global.networkPolicy.enabled }}
---
{{ include "opsline-lib.serviceNetworkPolicy" . }}
{{- end }}
{{- if .Values.global.serviceMonitor.enabled }}
---
{{ include "opsline-lib.serviceMonitor" . }}
{{- end }}
{{- if and .Values.persistence.enabled (not .Values.persistence.existingClaim) }}
---
{{ include "opsline-lib.stateClaim" . }}
{{- end }}
{{ include "opsline-lib.rbac" . }}
{{- end }}
{{- end -}}

{{- define "opsline-lib.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
# Only a service that talks to the Kubernetes API gets a token.
automountServiceAccountToken: {{ .Values.rbac.create }}
{{- end -}}

{{- define "opsline-lib.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  {{- if and .Values.persistence.enabled (has "ReadWriteOnce" .Values.persistence.accessModes) }}
  # A ReadWriteOnce volume cannot be attached to the old and the new pod at once.
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels: {{- include "opsline-lib.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels: {{- include "opsline-lib.labels" . | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .Values.port | quote }}
        prometheus.io/path: /metrics
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "opsline-lib.fullname" . }}
      automountServiceAccountToken: {{ .Values.rbac.create }}
      {{- with .Values.global.imagePullSecrets }}
      imagePullSecrets: {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ .Values.component }}
          image: {{ include "opsline-lib.image" . | quote }}
          imagePullPolicy: {{ .Values.global.image.pullPolicy }}
          command: ["python", "-m", {{ .Values.module | quote }}]
          ports:
            - name: http
              containerPort: {{ .Values.port }}
              protocol: TCP
          env: {{- include "opsline-lib.env" . | nindent 12 }}
          # /healthz answers as soon as the process serves; /readyz once the service's
          # dependencies (database, Kafka, Elasticsearch) are there. A service waits
          # for them with retries, so a slow dependency delays readiness, not liveness.
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 5
            failureThreshold: {{ .Values.startupFailureThreshold | default 24 }}
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 6
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 3
          resources: {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: state
              mountPath: /var/lib/opsline
            - name: tmp
              mountPath: /tmp
            {{- if .Values.rbac.inClusterKubeconfig }}
            - name: kubeconfig
              mountPath: /etc/opsline/kube
              readOnly: true
            {{- end }}
      volumes:
        - name: state
          {{- if .Values.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ .Values.persistence.existingClaim | default (include "opsline-lib.fullname" .) }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        - name: tmp
          emptyDir: {}
        {{- if .Values.rbac.inClusterKubeconfig }}
        - name: kubeconfig
          configMap:
            name: {{ printf "%s-kubeconfig" (include "opsline-lib.fullname" .) }}
        {{- end }}
      {{- include "opsline-lib.scheduling" . | nindent 6 }}
{{- end -}}

{{- define "opsline-lib.k8sService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
spec:
  type: {{ .Values.service.type | default "ClusterIP" }}
  selector: {{- include "opsline-lib.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .Values.port }}
      targetPort: http
      protocol: TCP
{{- end -}}

{{- define "opsline-lib.stateClaim" -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
spec: {{- include "opsline-lib.pvcSpec" .Values.persistence | nindent 2 }}
{{- end -}}

{{/* An Ingress to the service (the gateway's API and console), when ingress.enabled. */}}
{{- define "opsline-lib.ingress" -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "opsline-lib.fullname" . }}
  labels: {{- include "opsline-lib.labels" . | nindent 4 }}
  {{- with .Values.ingress.annotations }}
  annotations: {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with .Values.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with .Values.ingress.tls }}
  tls: {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    - {{- with .Values.ingress.host }}
      host: {{ . | quote }}
      {{- end }}
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: {{ include "opsline-lib.fullname" . }}
                port:
                  name: http
{{- end -}}
