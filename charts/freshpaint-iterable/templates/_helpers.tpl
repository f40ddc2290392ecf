{{- define "fpi.name" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 52 | trimSuffix "-" }}{{ else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "fpi.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: freshpaint-iterable
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "fpi.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fpi.caMounted" -}}
{{- if or .Values.kafka.caSecret .Values.kafka.caConfigMap }}true{{ end }}
{{- end }}

{{- define "fpi.caFile" -}}/etc/freshpaint-iterable-ca/ca.crt{{- end }}

{{/* The consumer group that reads the source topic, whose lag KEDA scales on (streams/settings.py,
FPI_SOURCE_READER): the first stage's own group <FPI_APP_ID>-source with the aiokafka reader (the default),
faust's group FPI_APP_ID with FPI_SOURCE_READER=faust or FPI_SOURCE_KEYED_BY_DEVICE=true. */}}
{{- define "fpi.sourceGroup" -}}
{{- $appId := .Values.settings.FPI_APP_ID | default "freshpaint-iterable" }}
{{- $reader := .Values.settings.FPI_SOURCE_READER | default "aiokafka" | toString }}
{{- if not (has $reader (list "aiokafka" "faust")) }}
{{- fail (printf "settings.FPI_SOURCE_READER must be aiokafka or faust, not %q" $reader) }}
{{- end }}
{{- $keyed := has (.Values.settings.FPI_SOURCE_KEYED_BY_DEVICE | default false | toString | lower) (list "true" "1" "yes" "on" "t" "y") }}
{{- if and (eq $reader "aiokafka") (not $keyed) }}{{ printf "%s-source" $appId }}{{ else }}{{ $appId }}{{ end }}
{{- end }}

{{/* Every FPI_* setting of the ConfigMap: .Values.settings plus the ones the chart derives. */}}
{{- define "fpi.settings" -}}
{{- $s := deepCopy .Values.settings }}
{{- $_ := set $s "FPI_KAFKA_BOOTSTRAP" .Values.kafka.bootstrap }}
{{- $_ := set $s "FPI_KAFKA_SECURITY_PROTOCOL" .Values.kafka.securityProtocol }}
{{- if .Values.kafka.saslMechanism }}{{ $_ := set $s "FPI_KAFKA_SASL_MECHANISM" .Values.kafka.saslMechanism }}{{ end }}
{{- if include "fpi.caMounted" . }}{{ $_ := set $s "FPI_KAFKA_SSL_CAFILE" (include "fpi.caFile" .) }}{{ end }}
{{- if .Values.registry.url }}{{ $_ := set $s "FPI_SCHEMA_REGISTRY_URL" .Values.registry.url }}{{ end }}
{{- if and .Values.registry.useKafkaCA (include "fpi.caMounted" .) }}{{ $_ := set $s "FPI_SCHEMA_REGISTRY_CAFILE" (include "fpi.caFile" .) }}{{ end }}
{{- if .Values.iterable.baseUrl }}{{ $_ := set $s "FPI_ITERABLE_BASE_URL" .Values.iterable.baseUrl }}{{ end }}
{{- $_ := set $s "FPI_TOPIC_PARTITIONS" (toString .Values.topics.partitions) }}
{{- $_ := set $s "FPI_TOPIC_REPLICATION_FACTOR" (toString .Values.topics.replicationFactor) }}
{{- $_ := set $s "FPI_CREATE_TOPICS" (toString .Values.topics.workerCreates) }}
{{- $_ := set $s "FPI_STORE" (printf "%s://" .Values.store) }}
{{- $_ := set $s "FPI_DATA_DIR" "/var/lib/freshpaint-iterable" }}
{{- $_ := set $s "FPI_WEB_PORT" "6066" }}
{{- $_ := set $s "FPI_WEB_BIND" "0.0.0.0" }}
{{- $_ := set $s "FPI_TRANSFORMATIONS_FILE" "/etc/freshpaint-iterable/transformations.toml" }}
{{- toYaml $s }}
{{- end }}

{{/* The Secret-backed variables, the same for the worker and the topics Job. */}}
{{- define "fpi.kafkaSecretEnv" -}}
- name: FPI_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ .Values.kafka.credentialsSecret }}, key: username, optional: true}
- name: FPI_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.kafka.credentialsSecret }}, key: sasl-password, optional: true}
{{- end }}

{{- define "fpi.caVolume" -}}
- name: ca
{{- if .Values.kafka.caSecret }}
  secret: {secretName: {{ .Values.kafka.caSecret }}}
{{- else }}
  configMap: {name: {{ .Values.kafka.caConfigMap }}}
{{- end }}
{{- end }}

{{- define "fpi.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}
