{{/*
One imagemesh service: Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget.
Called by each service's template with a dict:
  root       the chart root ($)
  component  object-name suffix and component label ("generate", "background-removal", ...)
  values     the service's values block
  env        extra container env (YAML list text)
  envFrom    extra container envFrom (YAML list text)
  volumes    extra pod volumes (YAML list text)
  mounts     extra volumeMounts (YAML list text)
  checksums  pod annotations (YAML map text) that roll the pods when their config changes
*/}}
{{- define "imagemesh.workload" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $name := include "imagemesh.componentName" (dict "root" $root "component" .component) -}}
{{- $sel := dict "root" $root "component" .component -}}
{{- $isGrpc := hasKey $v "grpcPort" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "imagemesh.componentLabels" $sel | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "imagemesh.selectorLabels" $sel | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {{ ternary 0 1 (gt (int $v.gpu) 0) }}
      maxUnavailable: 1
  template:
    metadata:
      labels:
        {{- include "imagemesh.componentLabels" $sel | nindent 8 }}
      annotations:
        {{- with .checksums }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        kubectl.kubernetes.io/default-container: {{ .component }}
    spec:
      serviceAccountName: {{ include "imagemesh.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      # Services stop taking work on SIGTERM and finish in-flight work within this grace period.
      terminationGracePeriodSeconds: {{ default 30 $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .component }}
          image: {{ include "imagemesh.image" (dict "root" $root "values" $v) | quote }}
          imagePullPolicy: {{ default $root.Values.image.pullPolicy $v.image.pullPolicy }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          ports:
            {{- if $isGrpc }}
            - name: grpc
              containerPort: {{ $v.grpcPort }}
              protocol: TCP
            {{- else }}
            - name: http
              containerPort: {{ $v.httpPort }}
              protocol: TCP
            {{- end }}
            - name: metrics
              containerPort: {{ $v.metricsPort }}
              protocol: TCP
          env:
            - name: IMAGEMESH_HOST
              value: "0.0.0.0"
            {{- if $isGrpc }}
            - name: IMAGEMESH_GRPC_PORT
              value: {{ $v.grpcPort | quote }}
            {{- else }}
            - name: IMAGEMESH_HTTP_PORT
              value: {{ $v.httpPort | quote }}
            {{- end }}
            - name: IMAGEMESH_METRICS_PORT
              value: {{ $v.metricsPort | quote }}
            - name: IMAGEMESH_VAR_DIR
              value: /var/lib/imagemesh
            - name: IMAGEMESH_LOG_LEVEL
              value: {{ $root.Values.logLevel | quote }}
            {{- with $root.Values.otlpEndpoint }}
            - name: IMAGEMESH_OTEL_EXPORTER_OTLP_ENDPOINT
              value: {{ . | quote }}
            {{- end }}
            {{- include "imagemesh.imageStore.env" $root | nindent 12 }}
            {{- include "imagemesh.internalToken.env" $root | nindent 12 }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- $envFrom := printf "%s%s" (include "imagemesh.imageStore.envFrom" $root) (default "" .envFrom) }}
          {{- if trim $envFrom }}
          envFrom:
            {{- $envFrom | nindent 12 }}
          {{- end }}
          {{- if $isGrpc }}
          startupProbe:
            {{- include "imagemesh.grpcProbe" (dict "port" $v.grpcPort "service" $v.healthService "cfg" $v.probes.startup) | nindent 12 }}
          readinessProbe:
            {{- include "imagemesh.grpcProbe" (dict "port" $v.grpcPort "service" $v.healthService "cfg" $v.probes.readiness) | nindent 12 }}
          livenessProbe:
            {{- include "imagemesh.grpcProbe" (dict "port" $v.grpcPort "service" $v.healthService "cfg" $v.probes.liveness) | nindent 12 }}
          {{- else }}
          startupProbe:
            {{- include "imagemesh.httpProbe" (dict "cfg" $v.probes.startup) | nindent 12 }}
          readinessProbe:
            {{- include "imagemesh.httpProbe" (dict "cfg" $v.probes.readiness) | nindent 12 }}
          livenessProbe:
            {{- include "imagemesh.httpProbe" (dict "cfg" $v.probes.liveness) | nindent 12 }}
          {{- end }}
          {{- $resources := deepCopy (default dict $v.resources) }}
          {{- if gt (int $v.gpu) 0 }}
          {{- $limits := default dict $resources.limits }}
          {{- $requests := default dict $resources.requests }}
          {{- $_ := set $limits "nvidia.com/gpu" (int $v.gpu) }}
          {{- $_ := set $requests "nvidia.com/gpu" (int $v.gpu) }}
          {{- $_ := set $resources "limits" $limits }}
          {{- $_ := set $resources "requests" $requests }}
          {{- end }}
          resources:
            {{- toYaml $resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: var
              mountPath: /var/lib/imagemesh
            {{- if ne $root.Values.imageStore.type "objectStore" }}
            - name: images
              mountPath: {{ $root.Values.imageStore.mountPath }}
            {{- end }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $root.Values.tmpSizeLimit }}
        - name: var
          emptyDir: {}
        {{- if eq $root.Values.imageStore.type "pvc" }}
        - name: images
          persistentVolumeClaim:
            claimName: {{ include "imagemesh.imageStore.claimName" $root }}
        {{- else if eq $root.Values.imageStore.type "emptyDir" }}
        - name: images
          emptyDir: {}
        {{- end }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "imagemesh.componentLabels" $sel | nindent 4 }}
  {{- with (and (not $isGrpc) $v.service.annotations) }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if $isGrpc }}
  {{- if $v.headless }}
  # Headless: DNS answers with every ready pod, so gRPC clients (dns:///) balance across all replicas.
  clusterIP: None
  {{- end }}
  type: ClusterIP
  {{- else }}
  type: {{ $v.service.type }}
  {{- end }}
  selector:
    {{- include "imagemesh.selectorLabels" $sel | nindent 4 }}
  ports:
    {{- if $isGrpc }}
    - name: grpc
      port: {{ $v.grpcPort }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    {{- else }}
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
    {{- end }}
    - name: metrics
      port: {{ $v.metricsPort }}
      targetPort: metrics
      protocol: TCP
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "imagemesh.componentLabels" $sel | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    {{- if and $v.autoscaling.queueDepth $v.autoscaling.queueDepth.enabled }}
    - type: Pods
      pods:
        metric:
          name: {{ $v.autoscaling.queueDepth.metricName }}
        target:
          type: AverageValue
          averageValue: {{ $v.autoscaling.queueDepth.averageValue | quote }}
    {{- else }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
    {{- end }}
{{- end }}
{{- if $v.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "imagemesh.componentLabels" $sel | nindent 4 }}
spec:
  {{- if hasKey $v.pdb "minAvailable" }}
  minAvailable: {{ $v.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "imagemesh.selectorLabels" $sel | nindent 6 }}
{{- end }}
{{- end -}}
