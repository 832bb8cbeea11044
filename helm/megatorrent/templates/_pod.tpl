{{/* The pod template shared by the StatefulSet (SQLite) and the Deployment (PostgreSQL). */}}
{{- define "megatorrent.podTemplate" -}}
metadata:
  labels:
    {{- include "megatorrent.labels" . | nindent 4 }}
    app.kubernetes.io/component: server
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Roll the pods when their configuration changes.
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if and (include "megatorrent.postgres" .) (not .Values.database.postgres.existingSecret) }}
    checksum/database-secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- if .Values.tor.enabled }}
    checksum/torrc: {{ include (print $.Template.BasePath "/tor-configmap.yaml") . | sha256sum }}
    {{- end }}
    {{- if and .Values.metrics.enabled .Values.metrics.podAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ .Values.ports.metrics | int | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "megatorrent.serviceAccountName" . }}
  automountServiceAccountToken: false
  # Kubernetes would otherwise inject `<SERVICE>_PORT=tcp://…` variables for every Service in
  # the namespace; a Service named `megatorrent` yields MEGATORRENT_PORT and friends, which
  # share the server's configuration prefix.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "megatorrent.terminationGracePeriodSeconds" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- if .Values.tor.enabled }}
  initContainers:
    # Tor insists on a private (0700) hidden-service directory it owns; Secret volumes are
    # neither, so copy the keys into the pod's tor state directory first.
    - name: onion-keys
      image: {{ include "megatorrent.imageRef" (list .Values.tor.image "") }}
      imagePullPolicy: {{ .Values.tor.image.pullPolicy }}
      command:
        - sh
        - -ec
        - |
          install -d -m 0700 /var/lib/tor/hidden_service
          for f in hs_ed25519_secret_key hs_ed25519_public_key hostname; do
            if [ -f "/onion-keys/$f" ]; then
              install -m 0600 "/onion-keys/$f" "/var/lib/tor/hidden_service/$f"
            fi
          done
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.tor.resources | nindent 8 }}
      volumeMounts:
        - name: onion-keys
          mountPath: /onion-keys
          readOnly: true
        - name: tor-state
          mountPath: /var/lib/tor
  {{- end }}
  containers:
    - name: megatorrentd
      image: {{ include "megatorrent.imageRef" (list .Values.image .Chart.AppVersion) }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config
        - {{ include "megatorrent.configDir" . }}/{{ include "megatorrent.configFile" . }}
      {{- if not (include "megatorrent.postgres" .) }}
      env:
        # The image's default points here too; set explicitly so the config file and the
        # environment agree (the environment wins over the file).
        - name: MEGATORRENT_DATABASE__URL
          value: {{ printf "sqlite://%s/%s" (include "megatorrent.dataDir" .) .Values.database.sqlite.file | quote }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- else if .Values.extraEnv }}
      env:
        {{- toYaml .Values.extraEnv | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.ports.http | int }}
          protocol: TCP
        {{- if .Values.udp.enabled }}
        - name: udp
          containerPort: {{ .Values.ports.udp | int }}
          protocol: UDP
        {{- end }}
        {{- if .Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ .Values.ports.metrics | int }}
          protocol: TCP
        {{- end }}
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      {{- if gt (int .Values.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSleepSeconds | int }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: {{ include "megatorrent.configDir" . }}/{{ include "megatorrent.configFile" . }}
          subPath: {{ include "megatorrent.configFile" . }}
          readOnly: true
        {{- if include "megatorrent.postgres" . }}
        - name: database-url
          mountPath: {{ include "megatorrent.dbSecretDir" . }}
          readOnly: true
        {{- else }}
        - name: data
          mountPath: {{ include "megatorrent.dataDir" . }}
        {{- end }}
    {{- if .Values.tor.enabled }}
    - name: tor
      image: {{ include "megatorrent.imageRef" (list .Values.tor.image "") }}
      imagePullPolicy: {{ .Values.tor.image.pullPolicy }}
      command:
        - tor
      args:
        - -f
        - /etc/megatorrent-tor/torrc
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.tor.resources | nindent 8 }}
      volumeMounts:
        - name: torrc
          mountPath: /etc/megatorrent-tor
          readOnly: true
        - name: tor-state
          mountPath: /var/lib/tor
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "megatorrent.fullname" . }}
    {{- if include "megatorrent.postgres" . }}
    - name: database-url
      secret:
        secretName: {{ include "megatorrent.dbSecretName" . }}
        defaultMode: 0440
        items:
          - key: {{ include "megatorrent.dbSecretKey" . }}
            path: url
    {{- else if not .Values.persistence.enabled }}
    - name: data
      emptyDir: {}
    {{- else if .Values.persistence.existingClaim }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ .Values.persistence.existingClaim }}
    {{- end }}
    {{- if .Values.tor.enabled }}
    - name: torrc
      configMap:
        name: {{ include "megatorrent.suffixed" (list . "tor") }}
    - name: onion-keys
      secret:
        secretName: {{ .Values.tor.existingSecret }}
        defaultMode: 0440
    - name: tor-state
      emptyDir: {}
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
