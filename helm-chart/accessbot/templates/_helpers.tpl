{{/* Names ------------------------------------------------------------------------ */}}

{{- define "accessbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accessbot.fullname" -}}
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

{{- define "accessbot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accessbot.serviceAccountName" -}}
{{- default (include "accessbot.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "accessbot.secretName" -}}
{{- default (include "accessbot.fullname" .) .Values.slack.existingSecret }}
{{- end }}

{{- define "accessbot.redisName" -}}
{{- printf "%s-redis" (include "accessbot.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels ----------------------------------------------------------------------- */}}

{{- define "accessbot.labels" -}}
helm.sh/chart: {{ include "accessbot.chart" . }}
{{ include "accessbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: accessbot
{{- end }}

{{- define "accessbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "accessbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "accessbot.botSelectorLabels" -}}
{{ include "accessbot.selectorLabels" . }}
app.kubernetes.io/component: bot
{{- end }}

{{- define "accessbot.redisSelectorLabels" -}}
{{ include "accessbot.selectorLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "accessbot.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* What the policy means for this cluster's RBAC -------------------------------
`policy` is YAML text. Clusters with `in_cluster: true` are the cluster the chart
is installed in. Each helper returns JSON; read it with fromJson / fromJsonArray. */}}

{{/* The policy as an object, after the checks the RBAC below depends on; the bot
validates everything else at start (`accessbot check`). */}}
{{- define "accessbot.policyObject" -}}
{{- $policy := fromYaml .Values.policy }}
{{- if hasKey $policy "Error" }}
{{- fail (printf "policy: not valid YAML: %s" (get $policy "Error")) }}
{{- end }}
{{- if not (kindIs "map" (get $policy "clusters")) }}
{{- fail "policy: needs a `clusters:` mapping (cluster name -> {in_cluster: true} or {context: ...})" }}
{{- end }}
{{- if not (kindIs "map" (get $policy "roles")) }}
{{- fail "policy: needs a `roles:` mapping (role name -> {cluster_role: ..., scope: ..., max_duration: ...})" }}
{{- end }}
{{- range $name, $cluster := $policy.clusters }}
{{- if not (kindIs "map" $cluster) }}
{{- fail (printf "policy: clusters.%s must be a mapping" $name) }}
{{- end }}
{{- end }}
{{- range $name, $role := $policy.roles }}
{{- if not (kindIs "map" $role) }}
{{- fail (printf "policy: roles.%s must be a mapping" $name) }}
{{- end }}
{{- $clusterRole := get $role "cluster_role" }}
{{- if or (not (hasKey $role "cluster_role")) (not (kindIs "string" $clusterRole)) (not $clusterRole) }}
{{- fail (printf "policy: roles.%s.cluster_role must be the name of a ClusterRole" $name) }}
{{- end }}
{{- if and (hasKey $role "clusters") (not (kindIs "slice" (get $role "clusters"))) }}
{{- fail (printf "policy: roles.%s.clusters must be a list of cluster names" $name) }}
{{- end }}
{{- if eq (get $role "scope" | toString) "namespace" }}
{{- $patterns := get $role "namespaces" }}
{{- if or (not (kindIs "slice" $patterns)) (not $patterns) }}
{{- fail (printf "policy: roles.%s (scope: namespace) needs `namespaces:`, a list of namespace patterns like [\"team-*\"]" $name) }}
{{- end }}
{{- range $patterns }}
{{- if or (not (kindIs "string" .)) (not .) }}
{{- fail (printf "policy: roles.%s.namespaces must be a list of namespace patterns (strings)" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with get $policy "protected_namespaces" }}
{{- if not (kindIs "slice" .) }}
{{- fail "policy: protected_namespaces must be a list of namespace patterns" }}
{{- end }}
{{- range . }}
{{- if or (not (kindIs "string" .)) (not .) }}
{{- fail "policy: protected_namespaces must be a list of namespace patterns (strings)" }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $policy }}
{{- end }}

{{/* Names of the policy clusters that are this cluster, sorted. */}}
{{- define "accessbot.localClusters" -}}
{{- $policy := include "accessbot.policyObject" . | fromJson }}
{{- $names := list }}
{{- range $name, $cluster := $policy.clusters }}
{{- if eq (get $cluster "in_cluster" | toString) "true" }}
{{- $names = append $names $name }}
{{- end }}
{{- end }}
{{- $names | sortAlpha | toJson }}
{{- end }}

{{/* Namespaces where grant ServiceAccounts are made on this cluster, sorted, distinct. */}}
{{- define "accessbot.usersNamespaces" -}}
{{- $policy := include "accessbot.policyObject" . | fromJson }}
{{- $namespaces := list }}
{{- range $name := include "accessbot.localClusters" . | fromJsonArray }}
{{- $cluster := get $policy.clusters $name }}
{{- $namespaces = append $namespaces (get $cluster "namespace" | default "accessbot-users") }}
{{- end }}
{{- $namespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The distinct cluster_role values of the roles available on this cluster: a role
without `clusters` is available everywhere, one with `clusters` only on those named. */}}
{{- define "accessbot.boundClusterRoles" -}}
{{- $policy := include "accessbot.policyObject" . | fromJson }}
{{- $local := include "accessbot.localClusters" . | fromJsonArray }}
{{- $clusterRoles := list }}
{{- range $name, $role := $policy.roles }}
{{- $available := true }}
{{- if hasKey $role "clusters" }}
{{- $available = false }}
{{- range get $role "clusters" }}
{{- if has (toString .) $local }}
{{- $available = true }}
{{- end }}
{{- end }}
{{- end }}
{{- if $available }}
{{- $clusterRoles = append $clusterRoles (get $role "cluster_role") }}
{{- end }}
{{- end }}
{{- $clusterRoles | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The roles available on this cluster (see boundClusterRoles), as a list of role objects. */}}
{{- define "accessbot.localRoles" -}}
{{- $policy := include "accessbot.policyObject" . | fromJson }}
{{- $local := include "accessbot.localClusters" . | fromJsonArray }}
{{- $roles := list }}
{{- range $name, $role := $policy.roles }}
{{- $available := true }}
{{- if hasKey $role "clusters" }}
{{- $available = false }}
{{- range get $role "clusters" }}
{{- if has (toString .) $local }}
{{- $available = true }}
{{- end }}
{{- end }}
{{- end }}
{{- if $available }}
{{- $roles = append $roles $role }}
{{- end }}
{{- end }}
{{- $roles | toJson }}
{{- end }}

{{/* A namespace glob (Python's fnmatchcase, what bot/policy.py matches with: `*` any
run, `?` one character, `[...]`/`[!...]` a set) as an RE2 fragment, unanchored. */}}
{{- define "accessbot.globToRegex" -}}
{{- regexQuoteMeta . | replace "\\*" ".*" | replace "\\?" "." | replace "\\[!" "[^" | replace "\\[" "[" | replace "\\]" "]" }}
{{- end }}

{{/* Namespaces the bot never binds into, as {"names": [...], "regex": "^(?:...)$" or "",
"globs": [the policy's patterns]}: every policy cluster's users' namespace (of other
clusters too: the same rule everywhere, as the bot applies it), the Kubernetes system namespaces,
the release's own namespace, and the policy's `protected_namespaces` patterns. */}}
{{- define "accessbot.protectedNamespaces" -}}
{{- $policy := include "accessbot.policyObject" . | fromJson }}
{{- $names := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace }}
{{- range $name, $cluster := $policy.clusters }}
{{- $names = append $names (get $cluster "namespace" | default "accessbot-users") }}
{{- end }}
{{- $regexes := list }}
{{- range get $policy "protected_namespaces" | default list }}
{{- $regexes = append $regexes (include "accessbot.globToRegex" .) }}
{{- end }}
{{- $regex := "" }}
{{- if $regexes }}
{{- $regex = printf "^(?:%s)$" (join "|" $regexes) }}
{{- end }}
{{- dict "names" ($names | uniq | sortAlpha) "regex" $regex "globs" (get $policy "protected_namespaces" | default list) | toJson }}
{{- end }}

{{/* What each grant binding may reference, from the roles available on this cluster:
{"cluster": [ClusterRoles of scope-cluster roles], "namespace": {ClusterRole: "^(?:p1|p2)$"},
"globs": {ClusterRole: [the policy's patterns p1, p2]}}
(a ClusterRole named by several namespace roles gets the union of their patterns). */}}
{{- define "accessbot.grantCatalog" -}}
{{- $cluster := list }}
{{- $patterns := dict }}
{{- $globs := dict }}
{{- range include "accessbot.localRoles" . | fromJsonArray }}
{{- $name := get . "cluster_role" }}
{{- if eq (get . "scope" | toString) "cluster" }}
{{- $cluster = append $cluster $name }}
{{- else }}
{{- $list := get $patterns $name | default list }}
{{- $globList := get $globs $name | default list }}
{{- range get . "namespaces" }}
{{- $list = append $list (include "accessbot.globToRegex" .) }}
{{- $globList = append $globList (toString .) }}
{{- end }}
{{- $_ := set $patterns $name ($list | uniq) }}
{{- $_ := set $globs $name ($globList | uniq) }}
{{- end }}
{{- end }}
{{- $namespace := dict }}
{{- range $name, $list := $patterns }}
{{- $_ := set $namespace $name (printf "^(?:%s)$" (join "|" $list)) }}
{{- end }}
{{- dict "cluster" ($cluster | uniq | sortAlpha) "namespace" $namespace "globs" $globs | toJson }}
{{- end }}

{{/* Seconds in a policy duration: text like `30m`, `8h`, `1d`, `1h30m` (bot/durations.py's
grammar: units d, h, m, s, largest first) or a whole number of seconds. Anything else
gives 0: the bot refuses such a policy. */}}
{{- define "accessbot.durationSeconds" -}}
{{- $text := . | toString | trim | lower }}
{{- $seconds := 0 }}
{{- if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) }}
{{- $seconds = . | int }}
{{- else if regexMatch "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $text }}
{{- $size := dict "d" 86400 "h" 3600 "m" 60 "s" 1 }}
{{- range regexFindAll "[0-9]+[dhms]" $text -1 }}
{{- $unit := substr (sub (len .) 1 | int) (len .) . }}
{{- $count := trimSuffix $unit . | atoi }}
{{- $seconds = add $seconds (mul $count (get $size $unit)) }}
{{- end }}
{{- end }}
{{- $seconds }}
{{- end }}

{{/* The longest token a grant on this cluster can need, in seconds: the longest
max_duration of the roles available here (an extension never reaches further from
now, bot/lifecycle.py new_expiry), and at least the TokenRequest API's 600 s floor
(k8s/grants/tokens.py MIN_TOKEN_SECONDS). */}}
{{- define "accessbot.maxTokenSeconds" -}}
{{- $longest := 600 }}
{{- range include "accessbot.localRoles" . | fromJsonArray }}
{{- $seconds := include "accessbot.durationSeconds" (get . "max_duration") | int }}
{{- if gt $seconds $longest }}
{{- $longest = $seconds }}
{{- end }}
{{- end }}
{{- $longest }}
{{- end }}

{{/* Redis ------------------------------------------------------------------------ */}}

{{- define "accessbot.redisSources" -}}
{{- $n := 0 }}
{{- if .Values.redis.url }}{{ $n = add1 $n }}{{ end }}
{{- if .Values.redis.existingSecret }}{{ $n = add1 $n }}{{ end }}
{{- if .Values.redis.bundled.enabled }}{{ $n = add1 $n }}{{ end }}
{{- $n }}
{{- end }}

{{/* The sentinels' own ports (for the NetworkPolicy), as a JSON list. */}}
{{- define "accessbot.sentinelPorts" -}}
{{- $ports := list }}
{{- range .Values.redis.sentinels }}
{{- $ports = append $ports (regexFind "[0-9]+$" . | int) }}
{{- end }}
{{- $ports | uniq | toJson }}
{{- end }}

{{/* Refuse values that would make a pod that cannot work. */}}
{{- define "accessbot.validate" -}}
{{- $sources := include "accessbot.redisSources" . | int }}
{{- if gt $sources 1 }}
{{- fail "redis: give only one of redis.url, redis.existingSecret and redis.bundled.enabled" }}
{{- end }}
{{- if .Values.redis.sentinels }}
{{- if not .Values.redis.sentinelMaster }}
{{- fail "redis: redis.sentinels needs redis.sentinelMaster (the master's name in the sentinels' configuration)" }}
{{- end }}
{{- if .Values.redis.bundled.enabled }}
{{- fail "redis: redis.sentinels replaces the bundled Redis: set redis.bundled.enabled=false" }}
{{- end }}
{{- else if .Values.redis.sentinelMaster }}
{{- fail "redis: redis.sentinelMaster is set but redis.sentinels is empty" }}
{{- end }}
{{- if and (eq $sources 0) (not .Values.slack.existingSecret) (not .Values.redis.sentinels) }}
{{- fail "redis: set redis.url (a managed Redis), redis.existingSecret, or redis.bundled.enabled=true; the image has no embedded Redis" }}
{{- end }}
{{- if has .Release.Namespace (include "accessbot.usersNamespaces" . | fromJsonArray) }}
{{- fail (printf "policy: the users' namespace must not be the release namespace (%s): grant ServiceAccounts would live beside the bot's own, and a binding to one of them could be a binding to the bot" .Release.Namespace) }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.sentinels (not (regexMatch "^rediss?://" .Values.redis.url)) }}
{{- fail "redis.url must start with redis:// or rediss:// with redis.sentinels" }}
{{- end }}
{{- if and .Values.redis.url (not (regexMatch "^(redis|rediss|unix)://" .Values.redis.url)) }}
{{- fail "redis.url must start with redis://, rediss:// or unix://" }}
{{- end }}
{{- end }}
