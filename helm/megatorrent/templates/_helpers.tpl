{{/*
Names. The full name is `<release>-<chart>` unless the release name already contains the
chart name (a release called `megatorrent` gives plain `megatorrent`).
*/}}
{{- define "megatorrent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "megatorrent.fullname" -}}
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

{{/* A name derived from the full name: `megatorrent.suffixed` (list $ "metrics"). */}}
{{- define "megatorrent.suffixed" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "megatorrent.fullname" $root | trunc (int (sub 62 (len $suffix)))) $suffix | replace "--" "-" }}
{{- end }}

{{- define "megatorrent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "megatorrent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "megatorrent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "megatorrent.labels" -}}
helm.sh/chart: {{ include "megatorrent.chart" . }}
{{ include "megatorrent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: megatorrent
{{- end }}

{{/* Labels of the server pods, and the selector that finds them. */}}
{{- define "megatorrent.podSelectorLabels" -}}
{{ include "megatorrent.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "megatorrent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "megatorrent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "megatorrent.postgres" -}}
{{- if eq .Values.database.mode "postgres" }}true{{ end }}
{{- end }}

{{/* `repository:tag` or `repository@digest` of an image block. */}}
{{- define "megatorrent.imageRef" -}}
{{- $image := index . 0 }}
{{- $defaultTag := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $defaultTag $image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the PostgreSQL URL, and the key in it. */}}
{{- define "megatorrent.dbSecretName" -}}
{{- default (include "megatorrent.suffixed" (list . "database")) .Values.database.postgres.existingSecret }}
{{- end }}

{{- define "megatorrent.dbSecretKey" -}}
{{- if .Values.database.postgres.existingSecret }}
{{- .Values.database.postgres.existingSecretKey }}
{{- else -}}
url
{{- end }}
{{- end }}

{{/* Fixed paths inside the megatorrentd container. */}}
{{- define "megatorrent.configDir" -}}/etc/megatorrent{{- end }}
{{- define "megatorrent.configFile" -}}megatorrentd.toml{{- end }}
{{- define "megatorrent.dbSecretDir" -}}/etc/megatorrent/database{{- end }}
{{- define "megatorrent.dataDir" -}}/data{{- end }}

{{- define "megatorrent.terminationGracePeriodSeconds" -}}
{{- $grace := int .Values.config.http.shutdown_grace_secs }}
{{- $delay := int (default 0 .Values.config.http.shutdown_delay_secs) }}
{{- $sleep := int .Values.preStopSleepSeconds }}
{{- $floor := add $grace $delay $sleep }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $floor 10 }}
{{- else }}
{{- $set := int .Values.terminationGracePeriodSeconds }}
{{- if le $set $floor }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.http.shutdown_grace_secs + shutdown_delay_secs + preStopSleepSeconds (%d), or the server is killed while it drains" $set $floor) }}
{{- end }}
{{- $set }}
{{- end }}
{{- end }}

{{/*
TOML rendering. Helm hands numbers over as floats (65536 would come out of toToml as
65536.0, which the server refuses for integer settings), so values are written here:
whole numbers as integers, strings as JSON strings (valid TOML basic strings), lists
inline, maps as [section] / [section.sub] tables with keys sorted.
*/}}
{{- define "megatorrent.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "bool" $v }}
{{- ternary "true" "false" $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq ($v | float64) ($v | int64 | float64) }}{{ $v | int64 }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) }}
{{- $v }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}{{ $items = append $items (include "megatorrent.tomlValue" .) }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else if kindIs "string" $v }}
{{- toJson $v }}
{{- else }}
{{- fail (printf "cannot write %s (%s) into the TOML config" (toJson $v) (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* (list "header.path" map): scalars first, then sub-tables. */}}
{{- define "megatorrent.tomlTable" -}}
{{- $header := index . 0 }}
{{- $table := index . 1 }}
{{- printf "\n[%s]\n" $header }}
{{- range $key := keys $table | sortAlpha }}
{{- $v := index $table $key }}
{{- if not (kindIs "map" $v) }}
{{- printf "%s = %s\n" $key (include "megatorrent.tomlValue" $v) }}
{{- end }}
{{- end }}
{{- range $key := keys $table | sortAlpha }}
{{- $v := index $table $key }}
{{- if kindIs "map" $v }}
{{- include "megatorrent.tomlTable" (list (printf "%s.%s" $header $key) $v) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The server's config: `config` from values, plus what the chart owns — the listeners and
the database location. Keys the chart writes: http.listen, database.url (SQLite) or
database.url_file (PostgreSQL), udp.listen or udp.enabled = false, metrics.listen or
metrics.enabled = false, onion_proxy.listen (tor.enabled).
*/}}
{{- define "megatorrent.configData" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $http := default dict $cfg.http }}
{{- $_ := set $http "listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- $_ = set $cfg "http" $http }}
{{- $db := default dict $cfg.database }}
{{- if include "megatorrent.postgres" . }}
{{- $_ = set $db "url_file" (printf "%s/url" (include "megatorrent.dbSecretDir" .)) }}
{{- else }}
{{- $_ = set $db "url" (printf "sqlite://%s/%s" (include "megatorrent.dataDir" .) .Values.database.sqlite.file) }}
{{- end }}
{{- $_ = set $cfg "database" $db }}
{{- $udp := default dict (get $cfg "udp") }}
{{- if .Values.udp.enabled }}
{{- $_ = set $udp "listen" (printf "0.0.0.0:%d" (int .Values.ports.udp)) }}
{{- else }}
{{- $_ = set $udp "enabled" false }}
{{- end }}
{{- $_ = set $cfg "udp" $udp }}
{{- $metrics := default dict (get $cfg "metrics") }}
{{- if .Values.metrics.enabled }}
{{- $_ = set $metrics "listen" (printf "0.0.0.0:%d" (int .Values.ports.metrics)) }}
{{- else }}
{{- $_ = set $metrics "enabled" false }}
{{- end }}
{{- $_ = set $cfg "metrics" $metrics }}
{{- if .Values.tor.enabled }}
{{- $onion := default dict (get $cfg "onion_proxy") }}
{{- $_ = set $onion "listen" (printf "127.0.0.1:%d" (int .Values.ports.onionProxy)) }}
{{- $_ = set $cfg "onion_proxy" $onion }}
{{- end }}
{{- printf "# megatorrentd configuration, rendered by the %s chart. Reference: docs/configuration.md\n" .Chart.Name }}
{{- if include "megatorrent.postgres" . }}
{{- printf "# database.url_file (the mounted Secret) takes precedence over any database.url.\n" }}
{{- end }}
{{- range $section := keys $cfg | sortAlpha }}
{{- include "megatorrent.tomlTable" (list $section (index $cfg $section)) }}
{{- end }}
{{- end }}

{{/* torrc for the Tor sidecar. */}}
{{- define "megatorrent.torrc" -}}
{{- $t := .Values.tor -}}
# torrc rendered by the {{ .Chart.Name }} chart: publish megatorrentd as a v3 onion service.
DataDirectory /var/lib/tor/data
SocksPort 0
Log notice stdout
AvoidDiskWrites 1

HiddenServiceDir /var/lib/tor/hidden_service
HiddenServicePort {{ int $t.virtualPort }} 127.0.0.1:{{ int .Values.ports.onionProxy }}
HiddenServiceExportCircuitID haproxy
HiddenServiceNumIntroductionPoints {{ int $t.numIntroductionPoints }}
HiddenServiceMaxStreams {{ int $t.maxStreams }}
HiddenServiceMaxStreamsCloseCircuit 1
HiddenServicePoWDefensesEnabled {{ ternary 1 0 $t.pow.enabled }}
{{- if $t.pow.enabled }}
HiddenServicePoWQueueRate {{ int $t.pow.queueRate }}
HiddenServicePoWQueueBurst {{ int $t.pow.queueBurst }}
{{- end }}
HiddenServiceEnableIntroDoSDefense {{ ternary 1 0 $t.introDoS.enabled }}
{{- if $t.introDoS.enabled }}
HiddenServiceEnableIntroDoSRatePerSec {{ int $t.introDoS.ratePerSec }}
HiddenServiceEnableIntroDoSBurstPerSec {{ int $t.introDoS.burstPerSec }}
{{- end }}
{{- with $t.extraConfig }}

# tor.extraConfig
{{ . }}
{{- end }}
{{- end }}

{{/* Rules the schema cannot express; rendered (as nothing) by configmap.yaml. */}}
{{- define "megatorrent.validate" -}}
{{- $p := .Values.ports }}
{{- $tcp := dict }}
{{- $_ := set $tcp (toString (int $p.http)) "ports.http" }}
{{- if .Values.metrics.enabled }}
{{- if hasKey $tcp (toString (int $p.metrics)) }}
{{- fail (printf "ports.metrics (%d) collides with %s" (int $p.metrics) (get $tcp (toString (int $p.metrics)))) }}
{{- end }}
{{- $_ = set $tcp (toString (int $p.metrics)) "ports.metrics" }}
{{- end }}
{{- if .Values.tor.enabled }}
{{- if hasKey $tcp (toString (int $p.onionProxy)) }}
{{- fail (printf "ports.onionProxy (%d) collides with %s" (int $p.onionProxy) (get $tcp (toString (int $p.onionProxy)))) }}
{{- end }}
{{- end }}
{{- $a := .Values.autoscaling }}
{{- if and (include "megatorrent.postgres" .) $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) exceeds autoscaling.maxReplicas (%d)" (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- end }}
{{- $_ = include "megatorrent.terminationGracePeriodSeconds" . }}
{{- end }}
