{{/*
Names, labels, the broker image, the rendered floe.toml, and the checks of values the
schema cannot express. Every template includes "floe.validate" through "floe.config", so a
bad combination fails `helm install` with a message naming the value.
*/}}

{{- define "floe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name. Kept to 40 characters so suffixes such as
"-minio-init-<revision>" and the StatefulSet's pod names stay within 63.
*/}}
{{- define "floe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "floe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource; the component label is added per resource. */}}
{{- define "floe.labels" -}}
helm.sh/chart: {{ include "floe.chart" . }}
app.kubernetes.io/name: {{ include "floe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: floe
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "broker"). */}}
{{- define "floe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "floe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The label that admits a pod to the brokers when networkPolicy.enabled. */}}
{{- define "floe.clientLabel" -}}
{{ include "floe.fullname" . }}-client
{{- end -}}

{{- define "floe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "floe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "floe.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* http, or https when the brokers serve TLS (tls.secret). */}}
{{- define "floe.scheme" -}}
{{- if .Values.tls.secret -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* The client Service's URL, as brokers' clients in the cluster reach it. */}}
{{- define "floe.serviceUrl" -}}
{{ include "floe.scheme" . }}://{{ include "floe.fullname" . }}:{{ .Values.service.port }}
{{- end -}}

{{/*
The name other brokers and clients reach a broker pod at. Without TLS its IP. With TLS
a name its certificate can carry: the pod's hostname under the headless Service
(`subdomain`), which one wildcard, *.<fullname>-headless.<namespace>.svc, covers for
every pod; a certificate cannot name pod IPs that are not known before the pod starts.
*/}}
{{- define "floe.advertiseHost" -}}
{{- if .Values.tls.secret -}}
$(POD_NAME).{{ include "floe.fullname" . }}-headless.{{ .Release.Namespace }}.svc
{{- else -}}
$(POD_IP)
{{- end -}}
{{- end -}}

{{/* The name the ServiceMonitor checks the brokers' certificate for: the client Service's. */}}
{{- define "floe.tlsServerName" -}}
{{ include "floe.fullname" . }}.{{ .Release.Namespace }}.svc
{{- end -}}

{{- define "floe.minioEndpoint" -}}
http://{{ include "floe.fullname" . }}-minio:9000
{{- end -}}

{{/* store.s3Endpoint, or the bundled MinIO when minio.dev is on and none is given. */}}
{{- define "floe.s3Endpoint" -}}
{{- if .Values.store.s3Endpoint -}}
{{- .Values.store.s3Endpoint -}}
{{- else if .Values.minio.dev.enabled -}}
{{- include "floe.minioEndpoint" . -}}
{{- end -}}
{{- end -}}

{{/* The Secret with S3 credentials the brokers use, if any. */}}
{{- define "floe.credentialsSecret" -}}
{{- if .Values.store.credentials.existingSecret -}}
{{- .Values.store.credentials.existingSecret -}}
{{- else if .Values.minio.dev.enabled -}}
{{- include "floe.fullname" . }}-minio
{{- end -}}
{{- end -}}

{{/* AWS_* variables from the credentials Secret (a YAML list, possibly empty). */}}
{{- define "floe.credentialsEnv" -}}
{{- $secret := include "floe.credentialsSecret" . -}}
{{- if $secret }}
{{- $creds := .Values.store.credentials }}
{{- $idKey := $creds.accessKeyIdKey }}
{{- $secretKey := $creds.secretAccessKeyKey }}
{{- if and .Values.minio.dev.enabled (not $creds.existingSecret) }}
{{- $idKey = "rootUser" }}
{{- $secretKey = "rootPassword" }}
{{- end }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $idKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $secretKey }}
{{- if and $creds.existingSecret $creds.sessionTokenKey }}
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $creds.sessionTokenKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A Kubernetes quantity without fractions ("4Gi", "500M", "1048576") in bytes.
*/}}
{{- define "floe.quantityBytes" -}}
{{- $quantity := toString .quantity -}}
{{- $digits := regexFind "^[0-9]+" $quantity -}}
{{- $suffix := trimPrefix $digits $quantity -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- if or (not $digits) (not (hasKey $units $suffix)) -}}
{{- fail (printf "%s: %q is not a whole quantity such as 4Gi, 500Mi or 1073741824" .value $quantity) -}}
{{- end -}}
{{- mul (atoi $digits) (get $units $suffix) -}}
{{- end -}}

{{/* [cache] disk_bytes: usedPercent of the volume, rounded down to MiB. */}}
{{- define "floe.cacheDiskBytes" -}}
{{- if .Values.cache.disk.enabled -}}
{{- $size := include "floe.quantityBytes" (dict "quantity" .Values.cache.disk.size "value" "cache.disk.size") | atoi -}}
{{- $bytes := div (mul $size (int .Values.cache.disk.usedPercent)) 100 -}}
{{- $mebibytes := div $bytes 1048576 -}}
{{- if lt $mebibytes 1 -}}
{{- fail (printf "cache.disk.size: %s leaves less than 1 MiB for the cache at usedPercent %v" .Values.cache.disk.size .Values.cache.disk.usedPercent) -}}
{{- end -}}
{{- mul $mebibytes 1048576 -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{- define "floe.dataDir" -}}/var/lib/floe{{- end -}}
{{- define "floe.cacheDir" -}}/var/cache/floe{{- end -}}
{{- define "floe.configDir" -}}/etc/floe{{- end -}}

{{- define "floe.authDir" -}}/etc/floe-auth{{- end -}}
{{- define "floe.tlsDir" -}}/etc/floe-tls{{- end -}}
{{- define "floe.clientCaDir" -}}/etc/floe-tls-client-ca{{- end -}}
{{- define "floe.jwksCaDir" -}}/etc/floe-jwks-ca{{- end -}}
{{- define "floe.internalSecretDir" -}}/etc/floe-internal-secret{{- end -}}
{{- define "floe.etcdTlsDir" -}}/etc/floe-etcd-tls{{- end -}}
{{- define "floe.s3CaDir" -}}/etc/floe-s3-ca{{- end -}}

{{/*
The Secrets the brokers mount, as JSON: [{name, secret, mountPath, items: [{key, path}]}].
The deployment's volumes and volumeMounts come from this one list; floe.derivedConfig
points the *_file settings into the same directories (scripts/chart_check.py checks that
each is an item of a mounted Secret). Whole directories, never subPath: the kubelet then
updates the files when the Secret changes, and floe re-reads the listener's certificate
and key and the tokens (the rest it reads at start). Items are listed, so a Secret
without a key the chart points floe at fails the pod's start with an event naming the
key, and the broker's private key stays out of anything but the TLS volume.
*/}}
{{- define "floe.secretVolumes" -}}
{{- $volumes := list -}}
{{- $v := .Values -}}
{{- if $v.auth.tokensSecret -}}
{{- $volumes = append $volumes (dict "name" "auth" "secret" $v.auth.tokensSecret "mountPath" (include "floe.authDir" .) "items" (list (dict "key" "tokens" "path" "tokens"))) -}}
{{- end -}}
{{- if $v.tls.secret -}}
{{- $items := list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key") -}}
{{- if $v.tls.peerCa -}}
{{- $items = append $items (dict "key" "ca.crt" "path" "ca.crt") -}}
{{- end -}}
{{- $volumes = append $volumes (dict "name" "tls" "secret" $v.tls.secret "mountPath" (include "floe.tlsDir" .) "items" $items) -}}
{{- end -}}
{{- if $v.tls.clientCaSecret -}}
{{- $volumes = append $volumes (dict "name" "tls-client-ca" "secret" $v.tls.clientCaSecret "mountPath" (include "floe.clientCaDir" .) "items" (list (dict "key" $v.tls.clientCaKey "path" "ca.crt"))) -}}
{{- end -}}
{{- if $v.auth.jwt.jwksCaSecret -}}
{{- $volumes = append $volumes (dict "name" "jwks-ca" "secret" $v.auth.jwt.jwksCaSecret "mountPath" (include "floe.jwksCaDir" .) "items" (list (dict "key" "ca.crt" "path" "ca.crt"))) -}}
{{- end -}}
{{- if $v.auth.internalSecret -}}
{{- $volumes = append $volumes (dict "name" "internal-secret" "secret" $v.auth.internalSecret "mountPath" (include "floe.internalSecretDir" .) "items" (list (dict "key" "secret" "path" "secret"))) -}}
{{- end -}}
{{- if $v.etcd.tls.secret -}}
{{- $items := list (dict "key" "ca.crt" "path" "ca.crt") -}}
{{- if $v.etcd.tls.clientCertificate -}}
{{- $items = concat $items (list (dict "key" "tls.crt" "path" "tls.crt") (dict "key" "tls.key" "path" "tls.key")) -}}
{{- end -}}
{{- $volumes = append $volumes (dict "name" "etcd-tls" "secret" $v.etcd.tls.secret "mountPath" (include "floe.etcdTlsDir" .) "items" $items) -}}
{{- end -}}
{{- if $v.store.s3CaSecret -}}
{{- $volumes = append $volumes (dict "name" "s3-ca" "secret" $v.store.s3CaSecret "mountPath" (include "floe.s3CaDir" .) "items" (list (dict "key" "ca.crt" "path" "ca.crt"))) -}}
{{- end -}}
{{- toJson $volumes -}}
{{- end -}}

{{/* config.auth as JSON, {} unless it is a map (floe.validate refuses that). */}}
{{- define "floe.configAuth" -}}
{{- if kindIs "map" .Values.config.auth -}}
{{- toJson .Values.config.auth -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/*
"true" when requests must authenticate: bearer tokens, JWTs (a JWKS URL, or a JWKS file
given through config and extraVolumes) or mutual TLS. floe then needs no
--allow-anonymous to listen on 0.0.0.0, and the chart does not pass it.
*/}}
{{- define "floe.authenticated" -}}
{{- $configAuth := include "floe.configAuth" . | fromJson -}}
{{- if or .Values.auth.tokensSecret .Values.auth.jwt.jwksUrl $configAuth.jwks_file .Values.tls.clientCaSecret -}}
true
{{- end -}}
{{- end -}}

{{/*
Checks of combinations of values. The schema refuses most bad values already; these also
hold when a user skips schema validation.
*/}}
{{- define "floe.validate" -}}
{{- $etcd := .Values.etcd -}}
{{- if and (not $etcd.endpoints) (not $etcd.dev.enabled) -}}
{{- fail "etcd.endpoints: set the external etcd's client URLs, or etcd.dev.enabled=true for a development etcd" -}}
{{- end -}}
{{- if and $etcd.endpoints $etcd.dev.enabled -}}
{{- fail "etcd.endpoints and etcd.dev.enabled are exclusive: set etcd.dev.enabled=false to use the external etcd" -}}
{{- end -}}
{{- if not (regexMatch "^s3://[^/]+" (toString .Values.store.url)) -}}
{{- fail (printf "store.url: %q must be s3://BUCKET or s3://BUCKET/PREFIX (every broker of the release shares it)" (toString .Values.store.url)) -}}
{{- end -}}
{{- if and $etcd.tls.secret $etcd.dev.enabled -}}
{{- fail "etcd.tls.secret: the development etcd (etcd.dev.enabled) serves plain HTTP; etcd.tls is for an external etcd" -}}
{{- end -}}
{{- if $etcd.tls.secret -}}
{{- range $endpoint := $etcd.endpoints -}}
{{- if hasPrefix "http://" $endpoint -}}
{{- fail (printf "etcd.endpoints: %q is plain HTTP, but etcd.tls.secret makes floe reach etcd over TLS: use https:// (or no scheme)" $endpoint) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.store.s3CaSecret -}}
{{- $s3Endpoint := include "floe.s3Endpoint" . -}}
{{- if hasPrefix "http://" $s3Endpoint -}}
{{- fail (printf "store.s3CaSecret: the S3 endpoint %s is plain HTTP; a CA is for an https:// endpoint (set store.s3Endpoint)" $s3Endpoint) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.clientCaSecret (not .Values.tls.secret) -}}
{{- fail "tls.clientCaSecret: mutual TLS needs the brokers' own certificate: set tls.secret" -}}
{{- end -}}
{{- $jwt := .Values.auth.jwt -}}
{{- $configAuth := include "floe.configAuth" . | fromJson -}}
{{- if or $jwt.issuer $jwt.audience $jwt.jwksUrl -}}
{{- if not (and $jwt.issuer $jwt.audience) -}}
{{- fail "auth.jwt: JWTs are accepted only from a named issuer for a named audience: set auth.jwt.issuer and auth.jwt.audience (and auth.jwt.jwksUrl)" -}}
{{- end -}}
{{- if not (or $jwt.jwksUrl $configAuth.jwks_file) -}}
{{- fail "auth.jwt.jwksUrl: set the issuer's jwks_uri, where floe fetches the keys JWTs are signed with" -}}
{{- end -}}
{{- end -}}
{{- if and $jwt.jwksCaSecret (not $jwt.jwksUrl) -}}
{{- fail "auth.jwt.jwksCaSecret: a CA for fetching auth.jwt.jwksUrl, which is unset" -}}
{{- end -}}
{{- if and .Values.internalPort (eq (int .Values.internalPort) 8080) -}}
{{- fail "internalPort: 8080 is the public port; pick another (e.g. 9093)" -}}
{{- end -}}
{{- if and .Values.minio.dev.enabled .Values.store.credentials.existingSecret -}}
{{- fail "store.credentials.existingSecret: the bundled MinIO (minio.dev.enabled) brings its own credentials; leave it empty" -}}
{{- end -}}
{{- $preStop := int .Values.preStopSleepSeconds -}}
{{- if and (gt $preStop 0) (ge $preStop (int .Values.terminationGracePeriodSeconds)) -}}
{{- fail (printf "preStopSleepSeconds: %d leaves floe no time to shut down: keep it well below terminationGracePeriodSeconds (%d)" $preStop (int .Values.terminationGracePeriodSeconds)) -}}
{{- end -}}
{{- $owned := dict
  "server.listen" "the chart sets it (FLOE_SERVER__LISTEN=0.0.0.0:8080)"
  "server.advertise" "the chart sets it to each pod's IP (FLOE_SERVER__ADVERTISE)"
  "server.log_format" "use the value logFormat"
  "server.data_dir" "the chart mounts a volume there; size it with dataDir.sizeLimit"
  "broker.id" "the chart sets it to each pod's name (FLOE_BROKER__ID)"
  "store.url" "use the value store.url"
  "store.s3_endpoint" "use the value store.s3Endpoint"
  "store.s3_region" "use the value store.s3Region"
  "store.s3_path_style" "use the value store.s3PathStyle"
  "cache.dir" "the chart mounts the disk tier there; see cache.disk"
  "cache.disk_bytes" "the chart derives it from cache.disk.size and cache.disk.usedPercent"
  "cluster.etcd" "use the value etcd.endpoints (or etcd.dev.enabled)"
  "server.internal_listen" "use the value internalPort"
  "server.internal_advertise" "the chart sets it to each pod's address on internalPort"
  "server.tls_cert_file" "use the value tls.secret (a kubernetes.io/tls Secret)"
  "server.tls_key_file" "use the value tls.secret (a kubernetes.io/tls Secret)"
  "server.tls_client_ca_file" "use the value tls.clientCaSecret"
  "server.peer_ca_file" "use the value tls.peerCa (the ca.crt of tls.secret)"
  "store.s3_ca_file" "use the value store.s3CaSecret"
  "cluster.etcd_ca_file" "use the value etcd.tls.secret"
  "cluster.etcd_cert_file" "use the value etcd.tls.secret (with etcd.tls.clientCertificate)"
  "cluster.etcd_key_file" "use the value etcd.tls.secret (with etcd.tls.clientCertificate)"
  "auth.tokens_file" "use the value auth.tokensSecret"
  "auth.allow_anonymous" "use the value auth.allowAnonymous"
  "auth.internal_secret_file" "use the value auth.internalSecret"
  "auth.jwt_issuer" "use the value auth.jwt.issuer"
  "auth.jwt_audience" "use the value auth.jwt.audience"
  "auth.jwks_url" "use the value auth.jwt.jwksUrl"
  "auth.jwks_ca_file" "use the value auth.jwt.jwksCaSecret"
  "auth.jwt_principal_claim" "use the value auth.jwt.principalClaim"
-}}
{{- range $section, $settings := .Values.config -}}
{{- if not (kindIs "map" $settings) -}}
{{- fail (printf "config.%s: must be a map of settings of the [%s] section" $section $section) -}}
{{- end -}}
{{- range $key, $_ := $settings -}}
{{- $path := printf "%s.%s" $section $key -}}
{{- if hasKey $owned $path -}}
{{- fail (printf "config.%s: %s" $path (get $owned $path)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $host := .Values.ingress.hosts -}}
{{- range $entry := $host.paths -}}
{{- if or (eq $entry.path "/") (hasPrefix "/internal" $entry.path) -}}
{{- fail (printf "ingress.hosts[].paths: %q would publish /internal/ (the broker-to-broker routes); route /v1 instead" $entry.path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
One TOML value. Helm reads YAML numbers as floats, and floe refuses 1.0e+06 where it
expects an integer: whole numbers are printed as integers, others as TOML floats
(tracing.sample_ratio: 0.05; floe refuses one where it expects an integer). Lists become arrays (auth.super_users) and maps inline tables with quoted keys
(quotas.principals, whose keys are principals such as "CN=bob,O=acme").
*/}}
{{- define "floe.tomlValue" -}}
{{- $value := .value -}}
{{- if kindIs "string" $value -}}
{{- toJson $value -}}
{{- else if kindIs "bool" $value -}}
{{- ternary "true" "false" $value -}}
{{- else if or (kindIs "float64" $value) (kindIs "float32" $value) -}}
{{- if ne (float64 (int64 $value)) (float64 $value) -}}
{{- printf "%v" $value -}}
{{- else -}}
{{- printf "%d" (int64 $value) -}}
{{- end -}}
{{- else if or (kindIs "int" $value) (kindIs "int64" $value) (kindIs "uint64" $value) -}}
{{- printf "%d" $value -}}
{{- else if kindIs "slice" $value -}}
{{- $items := list -}}
{{- range $index, $item := $value -}}
{{- $items = append $items (include "floe.tomlValue" (dict "value" $item "path" (printf "%s[%d]" $.path $index))) -}}
{{- end -}}
[{{ join ", " $items }}]
{{- else if kindIs "map" $value -}}
{{- $pairs := list -}}
{{- range $key := keys $value | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s = %s" (toJson $key) (include "floe.tomlValue" (dict "value" (get $value $key) "path" (printf "%s.%s" $.path $key)))) -}}
{{- end -}}
{ {{- join ", " $pairs -}} }
{{- else -}}
{{- fail (printf "config.%s: %v is not a string, number, boolean, list or map" .path $value) -}}
{{- end -}}
{{- end -}}

{{/* The settings the chart derives from values, by section. */}}
{{- define "floe.derivedConfig" -}}
{{- $store := dict "url" .Values.store.url -}}
{{- $endpoint := include "floe.s3Endpoint" . -}}
{{- if $endpoint -}}
{{- $_ := set $store "s3_endpoint" $endpoint -}}
{{- end -}}
{{- if .Values.store.s3Region -}}
{{- $_ := set $store "s3_region" .Values.store.s3Region -}}
{{- end -}}
{{- if not (kindIs "invalid" .Values.store.s3PathStyle) -}}
{{- $_ := set $store "s3_path_style" .Values.store.s3PathStyle -}}
{{- end -}}
{{- $cache := dict "disk_bytes" (include "floe.cacheDiskBytes" . | atoi) -}}
{{- if .Values.cache.disk.enabled -}}
{{- $_ := set $cache "dir" (include "floe.cacheDir" .) -}}
{{- end -}}
{{- $etcd := .Values.etcd.endpoints | join "," -}}
{{- if .Values.etcd.dev.enabled -}}
{{- $etcd = printf "http://%s-etcd:2379" (include "floe.fullname" .) -}}
{{- end -}}
{{- $server := dict "data_dir" (include "floe.dataDir" .) -}}
{{- $cluster := dict "etcd" $etcd "name" (include "floe.fullname" .) -}}
{{- $auth := dict -}}
{{- $v := .Values -}}
{{- if $v.tls.secret -}}
{{- $_ := set $server "tls_cert_file" (printf "%s/tls.crt" (include "floe.tlsDir" .)) -}}
{{- $_ := set $server "tls_key_file" (printf "%s/tls.key" (include "floe.tlsDir" .)) -}}
{{- if $v.tls.peerCa -}}
{{- $_ := set $server "peer_ca_file" (printf "%s/ca.crt" (include "floe.tlsDir" .)) -}}
{{- end -}}
{{- end -}}
{{- if $v.tls.clientCaSecret -}}
{{- $_ := set $server "tls_client_ca_file" (printf "%s/ca.crt" (include "floe.clientCaDir" .)) -}}
{{- end -}}
{{- if $v.store.s3CaSecret -}}
{{- $_ := set $store "s3_ca_file" (printf "%s/ca.crt" (include "floe.s3CaDir" .)) -}}
{{- end -}}
{{- if $v.etcd.tls.secret -}}
{{- $_ := set $cluster "etcd_ca_file" (printf "%s/ca.crt" (include "floe.etcdTlsDir" .)) -}}
{{- if $v.etcd.tls.clientCertificate -}}
{{- $_ := set $cluster "etcd_cert_file" (printf "%s/tls.crt" (include "floe.etcdTlsDir" .)) -}}
{{- $_ := set $cluster "etcd_key_file" (printf "%s/tls.key" (include "floe.etcdTlsDir" .)) -}}
{{- end -}}
{{- end -}}
{{- if $v.auth.tokensSecret -}}
{{- $_ := set $auth "tokens_file" (printf "%s/tokens" (include "floe.authDir" .)) -}}
{{- end -}}
{{- if $v.auth.jwt.issuer -}}
{{- $_ := set $auth "jwt_issuer" $v.auth.jwt.issuer -}}
{{- $_ := set $auth "jwt_audience" $v.auth.jwt.audience -}}
{{- $_ := set $auth "jwt_principal_claim" $v.auth.jwt.principalClaim -}}
{{- end -}}
{{- if $v.auth.jwt.jwksUrl -}}
{{- $_ := set $auth "jwks_url" $v.auth.jwt.jwksUrl -}}
{{- end -}}
{{- if $v.auth.jwt.jwksCaSecret -}}
{{- $_ := set $auth "jwks_ca_file" (printf "%s/ca.crt" (include "floe.jwksCaDir" .)) -}}
{{- end -}}
{{- if $v.auth.internalSecret -}}
{{- $_ := set $auth "internal_secret_file" (printf "%s/secret" (include "floe.internalSecretDir" .)) -}}
{{- end -}}
{{- if and (not (include "floe.authenticated" .)) $v.auth.allowAnonymous -}}
{{- $_ := set $auth "allow_anonymous" true -}}
{{- end -}}
{{- $derived := dict
  "server" $server
  "store" $store
  "cache" $cache
  "cluster" $cluster
  "auth" $auth
-}}
{{- toJson $derived -}}
{{- end -}}

{{/*
floe.toml: the derived settings, then config's (which may not repeat a derived one, see
floe.validate; cluster.name is the exception), sections in docs/configuration.md's order,
keys sorted.
*/}}
{{- define "floe.config" -}}
{{- include "floe.validate" . -}}
{{- $merged := include "floe.derivedConfig" . | fromJson -}}
{{- range $section, $settings := .Values.config -}}
{{- $_ := set $merged $section (merge (deepCopy $settings) (get $merged $section | default (dict))) -}}
{{- end -}}
{{- $sections := list "server" "store" "broker" "cache" "sequencer" "cluster" "jobs" "groups" "auth" "quotas" "tracing" -}}
{{- range $section, $_ := $merged -}}
{{- if not (has $section $sections) -}}
{{- fail (printf "config.%s: floe has no [%s] section (%s)" $section $section (join ", " $sections)) -}}
{{- end -}}
{{- end -}}
{{- $blocks := list -}}
{{- range $section := $sections -}}
{{- $settings := get $merged $section -}}
{{- if $settings -}}
{{- $lines := list (printf "[%s]" $section) -}}
{{- range $key := keys $settings | sortAlpha -}}
{{- $value := include "floe.tomlValue" (dict "value" (get $settings $key) "path" (printf "%s.%s" $section $key)) -}}
{{- $lines = append $lines (printf "%s = %s" $key $value) -}}
{{- end -}}
{{- $blocks = append $blocks (join "\n" $lines) -}}
{{- end -}}
{{- end -}}
{{- join "\n\n" $blocks -}}
{{- end -}}

{{/*
A probe of values (startupProbe, ...) as YAML; with TLS its httpGet asks over HTTPS unless
it names a scheme (the kubelet does not verify the certificate). Empty for null.
*/}}
{{- define "floe.probe" -}}
{{- with .probe -}}
{{- $probe := deepCopy . -}}
{{- if and $.root.Values.tls.secret (kindIs "map" $probe.httpGet) (not (hasKey $probe.httpGet "scheme")) -}}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end -}}
{{- end -}}

{{/* The securityContexts every pod and container of the chart share. */}}
{{- define "floe.podSecurityContext" -}}
{{- with .Values.podSecurityContext -}}
securityContext:
{{ toYaml . | indent 2 }}
{{- end -}}
{{- end -}}

{{- define "floe.containerSecurityContext" -}}
{{- with .Values.securityContext -}}
securityContext:
{{ toYaml . | indent 2 }}
{{- end -}}
{{- end -}}
