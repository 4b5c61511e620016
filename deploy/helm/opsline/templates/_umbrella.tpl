{{/* The databases of the enabled services, one a line. */}}
{{- define "opsline.databaseNames" -}}
{{- range $name := list "gateway" "appmanager" "build" "deploy" "dataops-ingest" "aiops-detector" }}
{{- $svc := index $.Values $name }}
{{- if and $svc.enabled $svc.database.name }}
{{- if not (regexMatch "^[a-z_][a-z0-9_]{0,62}$" $svc.database.name) }}
{{- fail (printf "%s.database.name %q: use lower-case letters, digits and _" $name $svc.database.name) }}
{{- end }}
{{ $svc.database.name }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Stop early, with the value to set, instead of pods that wait for nothing. */}}
{{- define "opsline.checks" -}}
{{- $g := .Values.global -}}
{{- if and (not .Values.kafka.enabled) (not $g.kafka.bootstrap) -}}
{{- fail "kafka.enabled=false: set global.kafka.bootstrap to your Kafka (host:port,…)" -}}
{{- end -}}
{{- if and (not .Values.postgresql.enabled) (not $g.database.host) -}}
{{- fail "postgresql.enabled=false: set global.database.host (and existingSecret) to your database" -}}
{{- end -}}
{{- if and (not .Values.postgresql.enabled) (not $g.database.existingSecret) -}}
{{- fail "postgresql.enabled=false: set global.database.existingSecret to the Secret with your database password" -}}
{{- end -}}
{{- if and .Values.postgresql.enabled $g.database.host -}}
{{- fail "global.database.host is set: turn the bundled PostgreSQL off (postgresql.enabled=false)" -}}
{{- end -}}
{{- if and (not .Values.elasticsearch.enabled) (not $g.elasticsearch.url) -}}
{{- fail "elasticsearch.enabled=false: set global.elasticsearch.url to your Elasticsearch" -}}
{{- end -}}
{{- if and .Values.elasticsearch.enabled $g.elasticsearch.url -}}
{{- fail "global.elasticsearch.url is set: turn the bundled Elasticsearch off (elasticsearch.enabled=false)" -}}
{{- end -}}
{{- if and .Values.kafka.enabled $g.kafka.bootstrap -}}
{{- fail "global.kafka.bootstrap is set: turn the bundled Kafka off (kafka.enabled=false)" -}}
{{- end -}}
{{- end -}}
