{{/* Names and labels shared by every template. */}}

{{- define "prewarm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "prewarm.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "prewarm.labels" -}}
{{ include "prewarm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "prewarm.serviceAccountName" -}}
{{- default (include "prewarm.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "prewarm.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* config.yaml with this release's names filled in (values win where set). */}}
{{- define "prewarm.config" -}}
{{- $fullname := include "prewarm.fullname" . -}}
{{- $config := deepCopy .Values.config -}}
{{- $k8s := dict "namespace" .Release.Namespace "configMap" (printf "%s-config" $fullname) "stateConfigMap" (printf "%s-state" $fullname) "leaseName" (printf "%s-leader" $fullname) -}}
{{- $_ := set $config "kubernetes" (merge (default dict $config.kubernetes) $k8s) -}}
{{- $pools := list -}}
{{- range $pool := (default list $config.nodePools) -}}
{{- $balloon := merge (default dict $pool.balloon) (dict "namespace" $.Release.Namespace "priorityClassName" $.Values.priorityClass.name) -}}
{{- if ne $balloon.namespace $.Release.Namespace -}}
{{- fail (printf "config.nodePools[%s].balloon.namespace must be the release namespace %s (the chart's Role grants balloons there only)" $pool.name $.Release.Namespace) -}}
{{- end -}}
{{- $pools = append $pools (merge (dict "balloon" $balloon) $pool) -}}
{{- end -}}
{{- if $pools -}}
{{- $_ := set $config "nodePools" $pools -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
