{{/*
The environment of a service container: every setting its settings classes read
(tests/deploy_chart checks that against the code). Secrets come only from Secrets:
a URL that needs a password refers to it as $(VAR), which Kubernetes expands from
the secretKeyRef variables listed before it.
*/}}

{{- define "opsline-lib.kafkaBootstrap" -}}
{{- .Values.global.kafka.bootstrap | default (printf "%s:9092" (include "opsline-lib.sibling" (list . "kafka"))) -}}
{{- end -}}

{{- define "opsline-lib.databaseSecret" -}}
{{- .Values.global.database.existingSecret | default (include "opsline-lib.sibling" (list . "postgresql")) -}}
{{- end -}}

{{- define "opsline-lib.databaseUrl" -}}
{{- $db := .Values.global.database -}}
{{- $host := $db.host | default (include "opsline-lib.sibling" (list . "postgresql")) -}}
{{- printf "%s://%s:$(DATABASE_PASSWORD)@%s:%v/%s%s" $db.driver $db.user $host $db.port .Values.database.name ($db.options | default "") -}}
{{- end -}}

{{- define "opsline-lib.esEndpoint" -}}
{{- .Values.global.elasticsearch.url | default (printf "http://%s:9200" (include "opsline-lib.sibling" (list . "elasticsearch"))) -}}
{{- end -}}

{{- define "opsline-lib.esSecret" -}}
{{- $es := .Values.global.elasticsearch -}}
{{- if $es.existingSecret -}}
{{- $es.existingSecret -}}
{{- else if not $es.url -}}
{{- include "opsline-lib.sibling" (list . "elasticsearch") -}}
{{- end -}}
{{- end -}}

{{/* The Elasticsearch URL: with credentials for the service that writes to it. */}}
{{- define "opsline-lib.esUrl" -}}
{{- $url := include "opsline-lib.esEndpoint" . -}}
{{- if and .Values.elasticsearchCredentials (include "opsline-lib.esSecret" .) -}}
{{- $u := urlParse $url -}}
{{- printf "%s://$(ELASTICSEARCH_USERNAME):$(ELASTICSEARCH_PASSWORD)@%s%s" $u.scheme $u.host $u.path -}}
{{- else -}}
{{- $url -}}
{{- end -}}
{{- end -}}

{{- define "opsline-lib.secretRef" -}}
valueFrom:
  secretKeyRef:
    name: {{ index . 0 | quote }}
    key: {{ index . 1 | quote }}
{{- end -}}

{{- define "opsline-lib.env" -}}
{{- $prefix := .Values.envPrefix -}}
{{- if .Values.database.name }}
- name: DATABASE_PASSWORD
  {{- include "opsline-lib.secretRef" (list (include "opsline-lib.databaseSecret" .) .Values.global.database.passwordKey) | nindent 2 }}
{{- end }}
{{- if and .Values.elasticsearchCredentials (include "opsline-lib.esSecret" .) }}
- name: ELASTICSEARCH_USERNAME
  {{- include "opsline-lib.secretRef" (list (include "opsline-lib.esSecret" .) .Values.global.elasticsearch.usernameKey) | nindent 2 }}
- name: ELASTICSEARCH_PASSWORD
  {{- include "opsline-lib.secretRef" (list (include "opsline-lib.esSecret" .) .Values.global.elasticsearch.passwordKey) | nindent 2 }}
{{- end }}
- name: OPSLINE_KAFKA_BOOTSTRAP
  value: {{ include "opsline-lib.kafkaBootstrap" . | quote }}
- name: OPSLINE_TOPIC_PARTITIONS
  value: {{ .Values.global.topicPartitions | quote }}
- name: OPSLINE_ELASTICSEARCH_URL
  value: {{ include "opsline-lib.esUrl" . | quote }}
- name: OPSLINE_INTERNAL_TOKEN
  {{- include "opsline-lib.secretRef" (list (include "opsline-lib.secretName" .) "internal-token") | nindent 2 }}
- name: OPSLINE_HOME
  value: /var/lib/opsline
- name: OPSLINE_LOG_LEVEL
  value: {{ .Values.global.logLevel | quote }}
- name: {{ printf "%sHOST" $prefix }}
  value: "0.0.0.0"
- name: {{ printf "%sPORT" $prefix }}
  value: {{ .Values.port | quote }}
{{- if .Values.database.name }}
- name: {{ printf "%sDATABASE_URL" $prefix }}
  value: {{ include "opsline-lib.databaseUrl" . | quote }}
{{- end }}
{{- range $name, $key := .Values.secretEnv }}
- name: {{ $name }}
  {{- include "opsline-lib.secretRef" (list (include "opsline-lib.secretName" $) $key) | nindent 2 }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ tpl (toString $value) $ | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
