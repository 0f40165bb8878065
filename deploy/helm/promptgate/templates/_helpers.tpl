{{/* Names and labels. */}}
{{- define "promptgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "promptgate.fullname" -}}
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

{{- define "promptgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "promptgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "promptgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "promptgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "promptgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "promptgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when image.digest is set. */}}
{{- define "promptgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "promptgate.secretName" -}}
{{- default (include "promptgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
"sqlite" or "postgres", from database.url; anything else fails the render. SQLite
has a single writer: more than one replica fails too.
*/}}
{{- define "promptgate.databaseKind" -}}
{{- $url := required "database.url is required" .Values.database.url }}
{{- if hasPrefix "sqlite:" $url }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount > 1 needs a postgres:// database.url: SQLite has one writer, so a SQLite release runs exactly one replica" }}
{{- end }}
{{- print "sqlite" }}
{{- else if or (hasPrefix "postgres://" $url) (hasPrefix "postgresql://" $url) }}
{{- print "postgres" }}
{{- else }}
{{- fail (printf "database.url must be sqlite://PATH or postgres://…, not %q" $url) }}
{{- end }}
{{- end }}

{{/* The pod template shared by the StatefulSet and the Deployment. */}}
{{- define "promptgate.podTemplate" -}}
{{- $kind := include "promptgate.databaseKind" . -}}
metadata:
  labels:
    {{- include "promptgate.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if not .Values.secrets.existingSecret }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "promptgate.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: promptgate
      image: {{ include "promptgate.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: [promptgate, serve]
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
      env:
        - name: PROMPTGATE_LISTEN
          value: "0.0.0.0:{{ .Values.containerPort }}"
        - name: PROMPTGATE_DATABASE_URL
          value: {{ .Values.database.url | quote }}
        {{- range $name, $value := .Values.config }}
        {{- if and (ne (toString $value) "") (ne $name "PROMPTGATE_LISTEN") (ne $name "PROMPTGATE_DATABASE_URL") }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
        {{- end }}
        {{- range $name, $value := .Values.extraEnv }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
      envFrom:
        - secretRef:
            name: {{ include "promptgate.secretName" . }}
      {{- with .Values.startupProbe }}
      startupProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /data
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- if eq $kind "postgres" }}
    # No state on disk with Postgres; /data stays writable for the working directory.
    - name: data
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
