{{/* Names, labels and the operator's RBAC rules. */}}

{{- define "vlmr1.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix; truncated to 63 (DNS label) because some names are used as labels. */}}
{{- define "vlmr1.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vlmr1.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vlmr1.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vlmr1.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "vlmr1.labels" -}}
helm.sh/chart: {{ include "vlmr1.chart" . }}
{{ include "vlmr1.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vlmr1
{{- end }}

{{- define "vlmr1.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vlmr1.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's kopf peering name: vlmr1_operator.operator.PEERING_NAME (a test compares). */}}
{{- define "vlmr1.peeringName" -}}
vlmr1
{{- end }}

{{- define "vlmr1.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The operator's API calls, written out from vlmr1_operator.permissions.RULES (the single
source: a new call there needs a line here). tests/chart/test_rbac.py renders the chart and
checks that the rendered rules equal RULES exactly, in both directions.

"vlmr1.rules.namespaced": rules on namespaced resources. Clusterwide they go into the
ClusterRole; with watchNamespaces they go into a Role in each watched namespace.
*/}}
{{- define "vlmr1.rules.namespaced" -}}
# Watch the custom resources; kopf patches its finalizer and progress annotations on them.
- apiGroups: ["vlmr1.io"]
  resources: ["grpojobs", "vlmservices"]
  verbs: ["get", "list", "watch", "patch"]
# Write phase, conditions, progress and checkpoints.
- apiGroups: ["vlmr1.io"]
  resources: ["grpojobs/status", "vlmservices/status"]
  verbs: ["get", "patch"]
# Delete finished jobs after runPolicy.ttlSecondsAfterFinished.
- apiGroups: ["vlmr1.io"]
  resources: ["grpojobs"]
  verbs: ["delete"]
# The autoscaler sets a VLMService's replica count.
- apiGroups: ["vlmr1.io"]
  resources: ["vlmservices/scale"]
  verbs: ["patch"]
# Run the training gang; restart it.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Gang DNS (headless Services); the rendered TrainerConfig (ConfigMaps).
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Report transitions and invalid specs as Events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Run a VLMService's engine replicas.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Keep a VLMService serving through node drains.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Gang scheduling with Volcano.
- apiGroups: ["scheduling.volcano.sh"]
  resources: ["podgroups"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Peering between operator replicas (only one acts) when watching namespaces.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/* "vlmr1.rules.cluster": rules marked cluster_scoped in RULES: always in a ClusterRole. */}}
{{- define "vlmr1.rules.cluster" -}}
# Peering between operator replicas when watching the whole cluster.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
# kopf notices CRDs installed after it started.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# kopf resolves namespace patterns.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
