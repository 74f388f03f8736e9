{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "imagemesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name prefix for every object. */}}
{{- define "imagemesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Object name of one component: dict "root" $ "component" "background-removal". */}}
{{- define "imagemesh.componentName" -}}
{{- printf "%s-%s" (include "imagemesh.fullname" .root | trunc 40 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "imagemesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "imagemesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imagemesh
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: dict "root" $ "component" "generate". */}}
{{- define "imagemesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagemesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "imagemesh.componentLabels" -}}
{{ include "imagemesh.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "imagemesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "imagemesh.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference of a component: dict "root" $ "values" .Values.generate. */}}
{{- define "imagemesh.image" -}}
{{- $img := .values.image -}}
{{- $registry := default .root.Values.image.registry $img.registry -}}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) $img.tag -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry $img.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
gRPC address of a component for IMAGEMESH_*_ADDRESS: dict "root" $ "component" "upscale" "values" .Values.upscale.
A headless Service gets dns:/// so that the client resolves every pod and balances per call.
*/}}
{{- define "imagemesh.address" -}}
{{- $host := printf "%s.%s.svc.cluster.local" (include "imagemesh.componentName" .) .root.Release.Namespace -}}
{{- if .values.headless -}}
{{- printf "dns:///%s:%v" $host .values.grpcPort -}}
{{- else -}}
{{- printf "%s:%v" $host .values.grpcPort -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the service-to-service token (key internal-token). */}}
{{- define "imagemesh.internalTokenSecretName" -}}
{{- default (printf "%s-internal-token" (include "imagemesh.fullname" .)) .Values.auth.internalToken.existingSecret -}}
{{- end -}}

{{/* IMAGEMESH_INTERNAL_TOKEN for every service, from its Secret, when service-to-service auth is on. */}}
{{- define "imagemesh.internalToken.env" -}}
{{- if .Values.auth.internalToken.enabled }}
- name: IMAGEMESH_INTERNAL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "imagemesh.internalTokenSecretName" . }}
      key: internal-token
{{- end }}
{{- end -}}

{{/* Name of the Secret holding api-keys and webhook-secret. */}}
{{- define "imagemesh.authSecretName" -}}
{{- default (printf "%s-auth" (include "imagemesh.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* True when a PostgreSQL connection is configured (bundled or external). */}}
{{- define "imagemesh.database.enabled" -}}
{{- if or .Values.postgresql.bundled.enabled .Values.postgresql.external.host .Values.postgresql.external.urlSecret -}}true{{- end -}}
{{- end -}}

{{/* Environment for IMAGEMESH_DATABASE_URL (orchestrator and gateway). */}}
{{- define "imagemesh.database.env" -}}
{{- $pg := .Values.postgresql -}}
{{- if and $pg.bundled.enabled (or $pg.external.host $pg.external.urlSecret) -}}
{{- fail "postgresql: set either bundled.enabled or external.host/external.urlSecret, not both" -}}
{{- end -}}
{{- if $pg.bundled.enabled }}
- name: IMAGEMESH_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "imagemesh.componentName" (dict "root" . "component" "postgresql") }}
      key: password
- name: IMAGEMESH_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(IMAGEMESH_DATABASE_PASSWORD)@%s:5432/%s" $pg.bundled.username (include "imagemesh.componentName" (dict "root" . "component" "postgresql")) $pg.bundled.database | quote }}
{{- else if $pg.external.urlSecret }}
- name: IMAGEMESH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $pg.external.urlSecret }}
      key: {{ $pg.external.urlKey }}
{{- else if $pg.external.host }}
{{- if not $pg.external.passwordSecret -}}
{{- fail "postgresql.external.passwordSecret is required with postgresql.external.host" -}}
{{- end }}
- name: IMAGEMESH_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pg.external.passwordSecret }}
      key: {{ $pg.external.passwordKey }}
- name: IMAGEMESH_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(IMAGEMESH_DATABASE_PASSWORD)@%s:%v/%s%s" $pg.external.username $pg.external.host $pg.external.port $pg.external.database (ternary (printf "?%s" $pg.external.options) "" (ne $pg.external.options "")) | quote }}
{{- end }}
{{- end -}}

{{/* Image store environment (every service): the settings shared.image_store.open_image_store reads. */}}
{{- define "imagemesh.imageStore.env" -}}
{{- $s := .Values.imageStore -}}
{{- if eq $s.type "objectStore" }}
{{- $o := $s.objectStore }}
- name: IMAGEMESH_IMAGE_STORE_URL
  value: {{ required "imageStore.objectStore.url (s3://bucket/prefix) is required with imageStore.type=objectStore" $o.url | quote }}
{{- with $o.endpointUrl }}
- name: IMAGEMESH_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $o.publicEndpointUrl }}
- name: IMAGEMESH_S3_PUBLIC_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $o.region }}
- name: IMAGEMESH_S3_REGION
  value: {{ . | quote }}
{{- end }}
- name: IMAGEMESH_S3_ADDRESSING_STYLE
  value: {{ default "auto" $o.addressingStyle | quote }}
{{- else if or (eq $s.type "pvc") (eq $s.type "emptyDir") }}
- name: IMAGEMESH_IMAGE_STORE_DIR
  value: {{ $s.mountPath | quote }}
{{- else }}
{{- fail (printf "imageStore.type must be pvc, emptyDir or objectStore, not %q" $s.type) }}
{{- end }}
{{- end -}}

{{- define "imagemesh.imageStore.envFrom" -}}
{{- if and (eq .Values.imageStore.type "objectStore") .Values.imageStore.objectStore.credentialsSecret }}
- secretRef:
    name: {{ .Values.imageStore.objectStore.credentialsSecret }}
{{- end }}
{{- end -}}

{{- define "imagemesh.imageStore.claimName" -}}
{{- default (printf "%s-images" (include "imagemesh.fullname" .)) .Values.imageStore.pvc.existingClaim -}}
{{- end -}}

{{/* grpc: probe for a gRPC component: dict "port" 50052 "service" "" "cfg" (periodSeconds, failureThreshold). */}}
{{- define "imagemesh.grpcProbe" -}}
grpc:
  port: {{ .port }}
  {{- with .service }}
  service: {{ . | quote }}
  {{- end }}
periodSeconds: {{ .cfg.periodSeconds }}
failureThreshold: {{ .cfg.failureThreshold }}
timeoutSeconds: {{ default 5 .cfg.timeoutSeconds }}
{{- end -}}

{{- define "imagemesh.httpProbe" -}}
httpGet:
  path: /health
  port: http
periodSeconds: {{ .cfg.periodSeconds }}
failureThreshold: {{ .cfg.failureThreshold }}
timeoutSeconds: {{ default 5 .cfg.timeoutSeconds }}
{{- end -}}

{{/* Models: env, mount and volume for the model-serving services. */}}
{{- define "imagemesh.models.env" -}}
- name: IMAGEMESH_MODELS_DIR
  value: /models
- name: HF_HUB_OFFLINE
  value: "1"
{{- end -}}

{{- define "imagemesh.models.mounts" -}}
{{- if eq .Values.models.source "pvc" }}
- name: models
  mountPath: /models
  readOnly: true
  {{- with .Values.models.subPath }}
  subPath: {{ . }}
  {{- end }}
{{- else if ne .Values.models.source "image" }}
{{- fail (printf "models.source must be image or pvc, not %q" .Values.models.source) }}
{{- end }}
{{- end -}}

{{- define "imagemesh.models.volumes" -}}
{{- if eq .Values.models.source "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ required "models.existingClaim is required with models.source=pvc" .Values.models.existingClaim }}
    readOnly: true
{{- end }}
{{- end -}}

{{/* Worker addresses as env (orchestrator and gateway). */}}
{{- define "imagemesh.workerAddresses.env" -}}
{{- $root := . -}}
{{- range $key, $envName := dict "generate" "IMAGEMESH_GENERATE_ADDRESS" "backgroundRemoval" "IMAGEMESH_BACKGROUND_REMOVAL_ADDRESS" "upscale" "IMAGEMESH_UPSCALE_ADDRESS" }}
{{- $v := index $root.Values $key }}
{{- if $v.enabled }}
- name: {{ $envName }}
  value: {{ include "imagemesh.address" (dict "root" $root "component" (include "imagemesh.componentOf" $key) "values" $v) | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Values key -> component name. */}}
{{- define "imagemesh.componentOf" -}}
{{- if eq . "backgroundRemoval" -}}background-removal{{- else -}}{{ . }}{{- end -}}
{{- end -}}
