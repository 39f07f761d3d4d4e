{{- define "ctwa.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ctwa.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ctwa.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ctwa.serviceAccountName" -}}
{{- default (include "ctwa.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* What the operator does in a namespace it watches: least privilege. */}}
{{- define "ctwa.rules" -}}
- apiGroups: ["ctwa.dev"]
  resources: [ctwatrackings, signalskeywords, signalspostbacks, xwebeventtags, conversionbridges]
  verbs: [get, list, watch, patch, update]
- apiGroups: ["ctwa.dev"]
  resources: [ctwatrackings/status, signalskeywords/status, signalspostbacks/status, xwebeventtags/status, conversionbridges/status]
  verbs: [get, patch, update]
- apiGroups: ["ctwa.dev"]
  resources: [ctwatrackings/finalizers, signalskeywords/finalizers, signalspostbacks/finalizers, xwebeventtags/finalizers, conversionbridges/finalizers]
  verbs: [update]
# Credentials are read; only the postback token Secret is created. Never updated or deleted.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create]
- apiGroups: ["events.k8s.io"]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
