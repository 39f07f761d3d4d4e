{{- define "ctwa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource names; 63 characters at most, minus room for the "-postbacks" suffix. */}}
{{- define "ctwa.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "ctwa.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ctwa.labels" -}}
{{ include "ctwa.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator Pods' identity. Never change it: a Deployment's selector is immutable. */}}
{{- define "ctwa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ctwa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ctwa.serviceAccountName" -}}
{{- default (include "ctwa.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "ctwa.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
Arguments that both the operator and the test Pod get, so `helm test` checks exactly the
upstreams and namespaces the operator uses.
*/}}
{{- define "ctwa.sharedArgs" -}}
- --signals-url={{ .Values.upstream.signalsUrl }}
- --hub-url={{ .Values.upstream.hubUrl }}
- --x-ads-url={{ .Values.upstream.xAdsUrl }}
{{- range .Values.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
- --leader-election-namespace={{ .Release.Namespace }}
- --lease-name={{ include "ctwa.fullname" . }}
{{- if gt (int .Values.shards) 1 }}
- --shards={{ .Values.shards }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The managed kinds (plural resource names in ctwa.dev): the one list every RBAC rule is built
from. Naming a resource whose CRD is not installed yet is harmless in RBAC.
*/}}
{{- define "ctwa.kinds" -}}
ctwatrackings signalskeywords signalspostbacks xwebeventtags conversionbridges signalsconversionevents
{{- end -}}

{{/* The kinds as a flow list, each with an optional suffix: (dict "suffix" "/status"). */}}
{{- define "ctwa.resources" -}}
{{- $suffix := .suffix | default "" -}}
{{- $out := list -}}
{{- range (include "ctwa.kinds" . | splitList " ") -}}
{{- $out = append $out (printf "%s%s" . $suffix) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* What the operator does in a namespace it watches: least privilege. */}}
{{- define "ctwa.rules" -}}
- apiGroups: ["ctwa.dev"]
  resources: {{ include "ctwa.resources" (dict) }}
  verbs: [get, list, watch, patch, update]
- apiGroups: ["ctwa.dev"]
  resources: {{ include "ctwa.resources" (dict "suffix" "/status") }}
  verbs: [get, patch, update]
- apiGroups: ["ctwa.dev"]
  resources: {{ include "ctwa.resources" (dict "suffix" "/finalizers") }}
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

{{/* Pod-level scheduling settings shared by the operator and the test Pod. */}}
{{- define "ctwa.podPlacement" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
