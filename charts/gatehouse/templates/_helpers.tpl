{{/* Names and labels ------------------------------------------------------------------ */}}

{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.fullname" -}}
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

{{- define "gatehouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ include "gatehouse.chart" . }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gatehouse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Paths inside the pod ------------------------------------------------------------- */}}

{{- define "gatehouse.configDir" -}}/etc/gatehouse/config{{- end }}
{{- define "gatehouse.tlsDir" -}}/etc/gatehouse/tls{{- end }}
{{- define "gatehouse.ticketKeysDir" -}}/etc/gatehouse/tls-tickets{{- end }}
{{/* The session-ticket key file gatehouse reads, or nothing when no Secret is named. */}}
{{- define "gatehouse.ticketKeysFile" -}}
{{- $t := .Values.tls.sessionTicketKeys }}
{{- if $t.existingSecret }}
{{- if not .Values.tls.enabled }}{{ fail "tls.sessionTicketKeys.existingSecret needs tls.enabled" }}{{ end }}
{{- printf "%s/ticket.keys" (include "gatehouse.ticketKeysDir" .) }}
{{- end }}
{{- end }}
{{- define "gatehouse.filesDir" -}}/etc/gatehouse/files{{- end }}

{{/* Shutdown timing --------------------------------------------------------------------- */}}

{{- define "gatehouse.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- $min := add (int $s.graceSeconds) (int $s.preStopSleepSeconds) }}
{{- if kindIs "invalid" $s.terminationGracePeriodSeconds }}
{{- add $min 10 }}
{{- else if le (int $s.terminationGracePeriodSeconds) $min }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must be above shutdown.preStopSleepSeconds + shutdown.graceSeconds (%d), or the kubelet kills gatehouse mid-drain" (int $s.terminationGracePeriodSeconds) $min) }}
{{- else }}
{{- int $s.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* TLS ---------------------------------------------------------------------------------- */}}

{{- define "gatehouse.tlsSecretName" -}}
{{- $t := .Values.tls }}
{{- $sources := 0 }}
{{- if $t.existingSecret }}{{ $sources = add1 $sources }}{{ end }}
{{- if or $t.cert $t.key }}{{ $sources = add1 $sources }}{{ end }}
{{- if $t.certManager.enabled }}{{ $sources = add1 $sources }}{{ end }}
{{- if ne (int $sources) 1 }}
{{- fail "tls.enabled needs exactly one of tls.existingSecret, tls.cert + tls.key, or tls.certManager.enabled" }}
{{- end }}
{{- if and (or $t.cert $t.key) (not (and $t.cert $t.key)) }}
{{- fail "tls.cert and tls.key go together" }}
{{- end }}
{{- if and $t.certManager.enabled (not $t.certManager.issuerRef.name) }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- if and $t.certManager.enabled (not $t.certManager.dnsNames) }}
{{- fail "tls.certManager.enabled needs at least one tls.certManager.dnsNames entry" }}
{{- end }}
{{- default (printf "%s-tls" (include "gatehouse.fullname" .)) $t.existingSecret }}
{{- end }}

{{/* Secrets: files by default, environment variables on request ---------------------------

"gatehouse.secretRefs" returns a YAML list of {what, env, secret, key, value, as, path} from
`secrets.*` and `redis` (value only for the chart-made Secret). `as` is "file" for the
entries of `secrets` when secrets.mode is "file": mounted at `path` and named by the `*_file`
keys, so a rotated Secret reaches gatehouse without a restart. The Redis URL has no file key
in gatehouse, so it is always an environment variable. */}}

{{- define "gatehouse.secretsDir" -}}/etc/gatehouse/secrets{{- end }}

{{- define "gatehouse.secretRefs" -}}
{{- $fullname := include "gatehouse.fullname" . }}
{{- $as := ternary "file" "env" (eq .Values.secrets.mode "file") }}
{{- $dir := include "gatehouse.secretsDir" . }}
{{- $refs := list }}
{{- $named := dict "adminToken" .Values.secrets.adminToken "hmacSecret" .Values.secrets.hmacSecret "introspectionClientSecret" .Values.secrets.introspectionClientSecret }}
{{- range $what := list "adminToken" "hmacSecret" "introspectionClientSecret" }}
{{- $s := get $named $what }}
{{- if and $s.existingSecret $s.value }}
{{- fail (printf "secrets.%s: set existingSecret or value, not both" $what) }}
{{- end }}
{{- if or $s.existingSecret $s.value }}
{{- $refs = append $refs (dict "what" (printf "secrets.%s" $what) "env" $s.envVar "secret" (default $fullname $s.existingSecret) "key" $s.key "value" $s.value "as" $as "path" (printf "%s/%s" $dir $s.key)) }}
{{- end }}
{{- end }}
{{- range $env := keys .Values.secrets.extra | sortAlpha }}
{{- $s := get $.Values.secrets.extra $env }}
{{- if and $s.existingSecret $s.value }}
{{- fail (printf "secrets.extra.%s: set existingSecret or value, not both" $env) }}
{{- end }}
{{- if not (or $s.existingSecret $s.value) }}
{{- fail (printf "secrets.extra.%s: set existingSecret (and key) or value" $env) }}
{{- end }}
{{- $key := default (lower $env | replace "_" "-") $s.key }}
{{- $refs = append $refs (dict "what" (printf "secrets.extra.%s" $env) "env" $env "secret" (default $fullname $s.existingSecret) "key" $key "value" ($s.value | default "") "as" $as "path" (printf "%s/%s" $dir $key)) }}
{{- end }}
{{- $r := .Values.redis }}
{{- if and $r.existingSecret $r.url }}
{{- fail "redis: set existingSecret or url, not both" }}
{{- end }}
{{- if or $r.existingSecret $r.url }}
{{- if $r.revocation }}
{{- $refs = append $refs (dict "what" "redis" "env" "GATEHOUSE_REVOCATION__STORE" "secret" (default $fullname $r.existingSecret) "key" $r.key "value" $r.url "as" "env") }}
{{- end }}
{{- if and $r.tickets (or .Values.rawConfig (not (kindIs "invalid" .Values.config.tickets))) }}
{{- $refs = append $refs (dict "what" "redis" "env" "GATEHOUSE_TICKETS__STORE" "secret" (default $fullname $r.existingSecret) "key" $r.key "value" $r.url "as" "env") }}
{{- end }}
{{- end }}
{{- toYaml $refs }}
{{- end }}

{{/* The secrets mounted as files, as a YAML list of refs; two may not share a path. */}}
{{- define "gatehouse.secretFiles" -}}
{{- $files := list }}
{{- $paths := dict }}
{{- range $ref := include "gatehouse.secretRefs" . | fromYamlArray }}
{{- if eq $ref.as "file" }}
{{- if hasKey $paths $ref.path }}
{{- fail (printf "%s and %s would both be mounted at %s; give one another key" (get $paths $ref.path) $ref.what $ref.path) }}
{{- end }}
{{- $_ := set $paths $ref.path $ref.what }}
{{- $files = append $files $ref }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/* What the pods read once at start: the secrets given as environment variables. A change
of these rolls the pods; a change of a secret file does not need to. */}}
{{- define "gatehouse.envSecretsChecksum" -}}
{{- $env := list }}
{{- range $ref := include "gatehouse.secretRefs" . | fromYamlArray }}
{{- if eq $ref.as "env" }}{{ $env = append $env (list $ref.env $ref.secret $ref.key $ref.value) }}{{ end }}
{{- end }}
{{- toJson $env | sha256sum }}
{{- end }}

{{/* The data of the Secret <fullname>, as YAML (empty when no secret comes from values). */}}
{{- define "gatehouse.createdSecretData" -}}
{{- $data := dict }}
{{- range $ref := include "gatehouse.secretRefs" . | fromYamlArray }}
{{- if $ref.value }}
{{- if and (hasKey $data $ref.key) (ne (get $data $ref.key) $ref.value) }}
{{- fail (printf "%s: the key %q of the chart-made Secret already holds another value; give it another key" $ref.what $ref.key) }}
{{- end }}
{{- $_ := set $data $ref.key $ref.value }}
{{- end }}
{{- end }}
{{- if $data }}{{ toYaml $data }}{{ end }}
{{- end }}

{{/* The environment: chart-managed overrides (rawConfig only), secrets, extraEnv. */}}
{{- define "gatehouse.env" -}}
{{- $env := list }}
{{- if .Values.rawConfig }}
{{- $env = append $env (dict "name" "GATEHOUSE_LISTEN__ADDR" "value" (printf "0.0.0.0:%d" (int .Values.ports.http))) }}
{{- $env = append $env (dict "name" "GATEHOUSE_ADMIN__ADDR" "value" (printf "0.0.0.0:%d" (int .Values.ports.admin))) }}
{{- $env = append $env (dict "name" "GATEHOUSE_SHUTDOWN__GRACE" "value" (printf "%ds" (int .Values.shutdown.graceSeconds))) }}
{{- if .Values.tls.enabled }}
{{- $env = append $env (dict "name" "GATEHOUSE_LISTEN__TLS__CERT" "value" (printf "%s/tls.crt" (include "gatehouse.tlsDir" .))) }}
{{- $env = append $env (dict "name" "GATEHOUSE_LISTEN__TLS__KEY" "value" (printf "%s/tls.key" (include "gatehouse.tlsDir" .))) }}
{{- with include "gatehouse.ticketKeysFile" . }}
{{- $env = append $env (dict "name" "GATEHOUSE_LISTEN__TLS__SESSION_TICKET_KEYS_FILE" "value" .) }}
{{- end }}
{{- end }}
{{- if or .Values.secrets.adminToken.existingSecret .Values.secrets.adminToken.value }}
{{- if eq .Values.secrets.mode "file" }}
{{- $env = append $env (dict "name" "GATEHOUSE_ADMIN__TOKEN_FILE" "value" (printf "%s/%s" (include "gatehouse.secretsDir" .) .Values.secrets.adminToken.key)) }}
{{- else }}
{{- $env = append $env (dict "name" "GATEHOUSE_ADMIN__TOKEN_ENV" "value" .Values.secrets.adminToken.envVar) }}
{{- end }}
{{- end }}
{{- $trust := include "gatehouse.clientTrust" . | fromYaml }}
{{- if hasKey $trust "trusted_proxies" }}
{{- $env = append $env (dict "name" "GATEHOUSE_LISTEN__TRUSTED_PROXIES" "value" (toJson $trust.trusted_proxies)) }}
{{- end }}
{{- if $trust.proxy_protocol }}
{{- $env = append $env (dict "name" "GATEHOUSE_LISTEN__PROXY_PROTOCOL" "value" "true") }}
{{- end }}
{{- end }}
{{- range $ref := include "gatehouse.secretRefs" . | fromYamlArray }}
{{- if eq $ref.as "env" }}
{{- $env = append $env (dict "name" $ref.env "valueFrom" (dict "secretKeyRef" (dict "name" $ref.secret "key" $ref.key))) }}
{{- end }}
{{- end }}
{{- $seen := dict }}
{{- range $e := concat $env .Values.extraEnv }}
{{- if hasKey $seen $e.name }}
{{- fail (printf "the environment variable %s is set twice (check secrets.*.envVar and extraEnv)" $e.name) }}
{{- end }}
{{- $_ := set $seen $e.name true }}
{{- end }}
{{- toYaml (concat $env .Values.extraEnv) }}
{{- end }}

{{/* TOML rendering ------------------------------------------------------------------------

gatehouse.toml is rendered from the structured `config` by these templates rather than by
Helm's toToml, which writes every YAML number as a float (65536.0) that gatehouse's integer
keys refuse. Integral numbers are written as integers; nulls are left out. */}}

{{- define "gatehouse.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "gatehouse.toml.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) }}
{{- $all := true }}
{{- range . }}{{ if not (kindIs "map" .) }}{{ $all = false }}{{ end }}{{ end }}
{{- if $all }}true{{ end }}
{{- end }}
{{- end }}

{{- define "gatehouse.toml.value" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq (float64 (int64 $v)) (float64 $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) }}{{ $v }}
{{- else if kindIs "slice" $v }}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "gatehouse.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $v }}{ {{- $first := true }}{{ range $k := keys $v | sortAlpha }}{{ $e := get $v $k }}{{ if not (kindIs "invalid" $e) }}{{ if not $first }},{{ end }} {{ include "gatehouse.toml.key" $k }} = {{ include "gatehouse.toml.value" $e }}{{ $first = false }}{{ end }}{{ end }} }
{{- else }}{{ fail (printf "config: cannot write %v (%s) as TOML" $v (kindOf $v)) }}
{{- end }}
{{- end }}

{{- define "gatehouse.toml.table" -}}
{{- $path := .path }}
{{- $table := .table }}
{{- $order := .order | default (keys $table | sortAlpha) }}
{{- range $k := $order }}
{{- $v := get $table $k }}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (include "gatehouse.toml.isTableArray" $v)) }}
{{ include "gatehouse.toml.key" $k }} = {{ include "gatehouse.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k := $order }}
{{- $v := get $table $k }}
{{- $p := append $path (include "gatehouse.toml.key" $k) }}
{{- if kindIs "map" $v }}

[{{ join "." $p }}]
{{- include "gatehouse.toml.table" (dict "path" $p "table" $v) }}
{{- else if include "gatehouse.toml.isTableArray" $v }}
{{- range $e := $v }}

[[{{ join "." $p }}]]
{{- include "gatehouse.toml.table" (dict "path" $p "table" $e) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The effective config: `config` plus the keys the chart owns, checked, as TOML. */}}
{{- define "gatehouse.configToml" -}}
{{- if .Values.rawConfig }}
{{- .Values.rawConfig }}
{{- else }}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $listen := get $cfg "listen" | default dict }}
{{- $admin := get $cfg "admin" | default dict }}
{{- $shutdown := get $cfg "shutdown" | default dict }}
{{- range $k := list "addr" }}
{{- if hasKey $listen $k }}{{ fail "config.listen.addr is set by the chart from ports.http; remove it" }}{{ end }}
{{- if hasKey $admin $k }}{{ fail "config.admin.addr is set by the chart from ports.admin; remove it" }}{{ end }}
{{- end }}
{{- if hasKey $shutdown "grace" }}{{ fail "config.shutdown.grace is set by the chart from shutdown.graceSeconds (which also sizes terminationGracePeriodSeconds); remove it" }}{{ end }}
{{- $_ := set $listen "addr" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- $_ = set $admin "addr" (printf "0.0.0.0:%d" (int .Values.ports.admin)) }}
{{- $_ = set $shutdown "grace" (printf "%ds" (int .Values.shutdown.graceSeconds)) }}
{{- if .Values.tls.enabled }}
{{- $tls := get $listen "tls" | default dict }}
{{- if or (hasKey $tls "cert") (hasKey $tls "key") }}{{ fail "config.listen.tls.cert/key are set by the chart when tls.enabled; remove them" }}{{ end }}
{{- $_ = set $tls "cert" (printf "%s/tls.crt" (include "gatehouse.tlsDir" .)) }}
{{- $_ = set $tls "key" (printf "%s/tls.key" (include "gatehouse.tlsDir" .)) }}
{{- with include "gatehouse.ticketKeysFile" . }}
{{- if hasKey $tls "session_ticket_keys_file" }}{{ fail "config.listen.tls.session_ticket_keys_file is set by the chart from tls.sessionTicketKeys; remove it" }}{{ end }}
{{- $_ = set $tls "session_ticket_keys_file" . }}
{{- end }}
{{- $_ = set $listen "tls" $tls }}
{{- end }}
{{- if or .Values.secrets.adminToken.existingSecret .Values.secrets.adminToken.value }}
{{- if or (hasKey $admin "token_env") (hasKey $admin "token_file") }}{{ fail "config.admin.token_env and token_file are set by the chart from secrets.adminToken; remove them" }}{{ end }}
{{- $_ = set $admin "token_env" .Values.secrets.adminToken.envVar }}
{{- end }}
{{- /* Secrets mounted as files: each *_env key that names one becomes the *_file key. */}}
{{- $files := dict }}
{{- range $ref := include "gatehouse.secretFiles" . | fromYamlArray }}{{ $_ := set $files $ref.env $ref.path }}{{ end }}
{{- if hasKey $files ($admin.token_env | default "") }}
{{- $_ = set $admin "token_file" (get $files $admin.token_env) }}
{{- $_ = unset $admin "token_env" }}
{{- end }}
{{- range $pair := list (list "issuer" "hmac_secret") (list "introspection" "client_secret") }}
{{- range $t := (get $cfg (first $pair) | default list) }}
{{- $envKey := printf "%s_env" (last $pair) }}
{{- if and (kindIs "map" $t) (hasKey $files (get $t $envKey | default "")) }}
{{- $_ := set $t (printf "%s_file" (last $pair)) (get $files (get $t $envKey)) }}
{{- $_ := unset $t $envKey }}
{{- end }}
{{- end }}
{{- end }}
{{- range $k := list "trusted_proxies" "proxy_protocol" }}
{{- if hasKey $listen $k }}{{ fail (printf "config.listen.%s is set by the chart from trustedProxies/proxyProtocol; remove it" $k) }}{{ end }}
{{- end }}
{{- $trust := include "gatehouse.clientTrust" . | fromYaml }}
{{- range $k, $v := $trust }}{{ $_ := set $listen $k $v }}{{ end }}
{{- $_ = set $cfg "listen" $listen }}
{{- $_ = set $cfg "admin" $admin }}
{{- $_ = set $cfg "shutdown" $shutdown }}
{{- /* Stores that the Redis Secret provides must not also be written here. */}}
{{- $refs := include "gatehouse.secretRefs" . | fromYamlArray }}
{{- $envNames := dict }}
{{- range $ref := $refs }}{{ if eq $ref.as "env" }}{{ $_ := set $envNames $ref.env true }}{{ end }}{{ end }}
{{- range $e := .Values.extraEnv }}{{ $_ := set $envNames $e.name true }}{{ end }}
{{- range $pair := list (list "revocation" "GATEHOUSE_REVOCATION__STORE") (list "tickets" "GATEHOUSE_TICKETS__STORE") }}
{{- $table := get $cfg (first $pair) }}
{{- if and (hasKey $envNames (last $pair)) (kindIs "map" $table) (hasKey ($table | default dict) "store") }}
{{- fail (printf "config.%s.store comes from the Redis Secret (redis.*); remove it" (first $pair)) }}
{{- end }}
{{- end }}
{{- /* Every *_env key must name a variable the pod gets (unless extraEnvFrom may hold it). */}}
{{- if not .Values.extraEnvFrom }}
{{- $needed := list }}
{{- if $admin.token_env }}{{ $needed = append $needed (list "config.admin.token_env" $admin.token_env) }}{{ end }}
{{- range $i, $iss := (get $cfg "issuer" | default list) }}
{{- if $iss.hmac_secret_env }}{{ $needed = append $needed (list (printf "config.issuer[%d].hmac_secret_env" $i) $iss.hmac_secret_env) }}{{ end }}
{{- end }}
{{- range $i, $x := (get $cfg "introspection" | default list) }}
{{- if $x.client_secret_env }}{{ $needed = append $needed (list (printf "config.introspection[%d].client_secret_env" $i) $x.client_secret_env) }}{{ end }}
{{- end }}
{{- range $n := $needed }}
{{- if not (hasKey $envNames (last $n)) }}
{{- fail (printf "%s names %s, but no secret provides it: set secrets.*.envVar with existingSecret or value, or secrets.extra.%s" (first $n) (last $n) (last $n)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $preferred := list "listen" "admin" "runtime" "issuer" "introspection" "identity" "tickets" "logout" "revocation" "log" "route" "shutdown" "limits" }}
{{- $order := list }}
{{- range $k := $preferred }}{{ if hasKey $cfg $k }}{{ $order = append $order $k }}{{ end }}{{ end }}
{{- range $k := keys $cfg | sortAlpha }}{{ if not (has $k $preferred) }}{{ $order = append $order $k }}{{ end }}{{ end }}
{{- printf "# gatehouse.toml rendered by the %s chart from its `config` values; edit those, not this file." (include "gatehouse.chart" .) }}
{{- include "gatehouse.toml.table" (dict "path" list "table" $cfg "order" $order) }}
{{- end }}
{{- end }}

{{/* Environment variable names that gatehouse would read as config overrides. */}}
{{- define "gatehouse.checkEnvNames" -}}
{{- $tables := list "listen" "admin" "runtime" "issuer" "introspection" "identity" "tickets" "logout" "revocation" "log" "route" "shutdown" "limits" "reload" "paths" "trace" }}
{{- range $ref := include "gatehouse.secretRefs" . | fromYamlArray }}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" $ref.env) }}
{{- fail (printf "%s: %q is not an environment variable name" $ref.what $ref.env) }}
{{- end }}
{{- /* Checked in file mode too: the name still becomes a variable with secrets.mode "env". */}}
{{- $lower := lower $ref.env }}
{{- if and (hasPrefix "gatehouse_" $lower) (not (hasPrefix "gatehouse_revocation__store" $lower)) (not (hasPrefix "gatehouse_tickets__store" $lower)) }}
{{- $top := first (splitList "__" (trimPrefix "gatehouse_" $lower)) }}
{{- if has $top $tables }}
{{- fail (printf "%s: %s would be read by gatehouse as an override of the config table %q; pick another name (e.g. GATEHOUSE_%s_SECRET)" $ref.what $ref.env $top (upper $top)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* listen.trusted_proxies and listen.proxy_protocol from `trustedProxies` and
`proxyProtocol`, as YAML; empty when both are off. */}}
{{- define "gatehouse.clientTrust" -}}
{{- $t := .Values.trustedProxies }}
{{- if and .Values.proxyProtocol (not $t.enabled) }}
{{- fail "proxyProtocol needs trustedProxies.enabled: the PROXY header is believed only from trusted peers" }}
{{- end }}
{{- if $t.enabled }}
trusted_proxies: {{ toJson (default $t.podNetwork $t.cidrs) }}
{{- if .Values.proxyProtocol }}
proxy_protocol: true
{{- end }}
{{- end }}
{{- end }}

{{/* Several pods share revocations and tickets only through Redis: with the in-memory
stores a revocation holds on one pod and a ticket issued by one is unknown to the others.
Refused unless `redis.perPodStores` says that is meant. */}}
{{- define "gatehouse.sharedStores" -}}
{{- $several := or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}
{{- $r := .Values.redis }}
{{- $viaValues := and (or $r.existingSecret $r.url) $r.revocation }}
{{- $c := .Values.config | default dict }}
{{- $viaConfig := hasPrefix "redis" ((($c.revocation | default dict).store) | default "" | toString) }}
{{- $viaRaw := and .Values.rawConfig (contains "redis" .Values.rawConfig) }}
{{- if and $several (not (or $viaValues $viaConfig $viaRaw $r.perPodStores)) }}
{{- fail "several pods (replicaCount > 1 or autoscaling.enabled) need Redis for revocations and tickets: set redis.url or redis.existingSecret; or set redis.perPodStores=true to run each pod with its own in-memory stores (a revocation then holds on one pod only, and a ticket only on the pod that issued it)" }}
{{- end }}
{{- end }}
