{{/* The name of a service's objects: stepwise-<service>. */}}
{{- define "stepwise.name" -}}
{{- printf "stepwise-%s" . | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries; "service" is the Stepwise service's name. */}}
{{- define "stepwise.labels" -}}
app.kubernetes.io/name: {{ include "stepwise.name" .service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: stepwise
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "stepwise.selector" -}}
app.kubernetes.io/name: {{ include "stepwise.name" .service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* The image, by digest when one is given. */}}
{{- define "stepwise.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "stepwise.secretName" -}}
{{- .Values.secrets.existingSecret | default "stepwise-secrets" -}}
{{- end -}}
