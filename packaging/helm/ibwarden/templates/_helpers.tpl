{{/*
Helpers of the ibwarden chart. Every per-account template starts from "ibwarden.accounts",
which validates the whole values tree (failing the render with a message that names the
account and the key) and returns the accounts normalised, with their defaults applied.
*/}}

{{/* The chart name (nameOverride). */}}
{{- define "ibwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: <release>-ibwarden, or the release name when it holds the
chart name already, or fullnameOverride. */}}
{{- define "ibwarden.fullname" -}}
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

{{- define "ibwarden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The image reference; the tag defaults to the chart's appVersion. */}}
{{- define "ibwarden.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}

{{/* Labels on every object of the release (no account). */}}
{{- define "ibwarden.commonLabels" -}}
helm.sh/chart: {{ include "ibwarden.chart" . }}
app.kubernetes.io/name: {{ include "ibwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ibwarden
{{- end -}}

{{/* Selector labels of one account's pod. Argument: dict "root" $ "account" $acct.
The account label makes the selectors of two accounts disjoint; the instance label those of
two releases. */}}
{{- define "ibwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ibwarden.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
ibwarden/account: {{ .account.name }}
{{- end -}}

{{/* All labels of one account's objects. Argument: dict "root" $ "account" $acct. */}}
{{- define "ibwarden.labels" -}}
{{ include "ibwarden.commonLabels" .root }}
ibwarden/account: {{ .account.name }}
{{- end -}}

{{/* Variables the chart sets itself: extraEnv may not set them again. */}}
{{- define "ibwarden.managedEnv" -}}
{{- toJson (list "TWS_USERID" "TRADING_MODE" "EXISTING_SESSION_DETECTED_ACTION" "TIME_ZONE" "STATE_DIRECTORY" "RUNTIME_DIRECTORY" "CREDENTIALS_DIRECTORY" "IBWARDEN_RELAY_LISTEN" "IBWARDEN_RELAY_ALLOW" "IBWARDEN_HEALTH_LISTEN" "IBWARDEN_CONFIG" "HOME") -}}
{{- end -}}

{{/*
Validates the values and returns the accounts as a JSON list, each with:
name, fullname (the name of its StatefulSet, Services, PDB), username, tradingMode, port,
existingSecret, existingSession, timeZone, relayAllow (comma-joined), resources, extraEnv.
Use: {{- $accounts := include "ibwarden.accounts" . | fromJsonArray }}
*/}}
{{- define "ibwarden.accounts" -}}
{{- $root := . -}}
{{- $v := .Values -}}
{{- if hasKey $v "replicas" -}}
{{- fail "replicas is not configurable: each account runs exactly one pod (two gateways logged into one account fight over IBKR's session); add accounts to `accounts` instead" -}}
{{- end -}}
{{- $grace := $v.terminationGracePeriodSeconds -}}
{{- if not (or (kindIs "int" $grace) (kindIs "int64" $grace) (kindIs "float64" $grace)) -}}
{{- fail (printf "terminationGracePeriodSeconds must be a number of seconds (at least 100), not %v" $grace) -}}
{{- end -}}
{{- if lt (int $grace) 100 -}}
{{- fail (printf "terminationGracePeriodSeconds is %d, it must be at least 100: ibwarden gives the gateway up to 90 s (stop_grace) to log out cleanly, and a gateway killed before that strands IBKR's session for 15+ minutes" (int $grace)) -}}
{{- end -}}
{{- $accounts := $v.accounts -}}
{{- if not (kindIs "slice" $accounts) -}}
{{- fail "accounts must be a list of accounts, each with name, username, tradingMode and existingSecret (see values.yaml)" -}}
{{- end -}}
{{- if eq (len $accounts) 0 -}}
{{- fail "accounts is empty: add at least one account (name, username, tradingMode, existingSecret; see values.yaml)" -}}
{{- end -}}
{{- $base := include "ibwarden.fullname" $root -}}
{{- $allowed := list "name" "username" "tradingMode" "existingSecret" "existingSession" "timeZone" "relayAllow" "resources" "extraEnv" -}}
{{- $managed := include "ibwarden.managedEnv" $root | fromJsonArray -}}
{{- $sessions := list "primary" "primaryoverride" "secondary" "manual" -}}
{{- $seen := dict -}}
{{- $out := list -}}
{{- range $i, $a := $accounts -}}
{{- if not (kindIs "map" $a) -}}
{{- fail (printf "accounts[%d] must be a map with name, username, tradingMode and existingSecret" $i) -}}
{{- end -}}
{{- $name := toString (default "" $a.name) -}}
{{- if eq $name "" -}}
{{- fail (printf "accounts[%d] has no name" $i) -}}
{{- end -}}
{{- $where := printf "accounts[%d] (%s)" $i $name -}}
{{- if or (gt (len $name) 63) (not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name)) -}}
{{- fail (printf "%s: the name %q is not a DNS-1123 label: use lower case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters" $where $name) -}}
{{- end -}}
{{- if hasKey $seen $name -}}
{{- fail (printf "%s: the name %q is used by two accounts" $where $name) -}}
{{- end -}}
{{- $_ := set $seen $name true -}}
{{- if hasKey $a "replicas" -}}
{{- fail (printf "%s: replicas is not configurable: an account runs exactly one pod, because two gateways logged into one account fight over IBKR's session" $where) -}}
{{- end -}}
{{- range $k, $_ := $a -}}
{{- if not (has $k $allowed) -}}
{{- fail (printf "%s: unknown key %q (the keys are: %s)" $where $k (join ", " $allowed)) -}}
{{- end -}}
{{- end -}}
{{- $fullname := printf "%s-%s" $base $name -}}
{{- if gt (len $fullname) 52 -}}
{{- fail (printf "%s: the object name %q is %d characters; a StatefulSet's name may have at most 52 (its pods' revision label adds 11): shorten the account name, the release name or set fullnameOverride" $where $fullname (len $fullname)) -}}
{{- end -}}
{{- $username := toString (default "" $a.username) -}}
{{- if eq $username "" -}}
{{- fail (printf "%s: username is missing (the IBKR username, TWS_USERID)" $where) -}}
{{- end -}}
{{- $mode := toString (default "" $a.tradingMode) -}}
{{- if not (has $mode (list "live" "paper")) -}}
{{- fail (printf "%s: tradingMode is %q, it must be live or paper (one account per gateway: add a second account for the other mode)" $where $mode) -}}
{{- end -}}
{{- $secret := toString (default "" $a.existingSecret) -}}
{{- if eq $secret "" -}}
{{- fail (printf "%s: existingSecret is missing: name an existing Secret with the key `password`%s (kubectl create secret generic ibkr-%s --from-file=password=...%s); the chart never holds secret values" $where (ternary " and the key `totp` (the activation code)" "" (eq $mode "live")) $name (ternary " --from-file=totp=..." "" (eq $mode "live"))) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" $secret) -}}
{{- fail (printf "%s: existingSecret %q is not a valid Secret name" $where $secret) -}}
{{- end -}}
{{- $session := toString (ternary $a.existingSession $v.defaults.existingSession (hasKey $a "existingSession")) -}}
{{- if and (ne $session "") (not (has $session $sessions)) -}}
{{- fail (printf "%s: existingSession is %q, it must be one of %s" $where $session (join ", " $sessions)) -}}
{{- end -}}
{{- $tz := toString (ternary $a.timeZone $v.defaults.timeZone (hasKey $a "timeZone")) -}}
{{- $allow := ternary $a.relayAllow $v.relay.allow (hasKey $a "relayAllow") -}}
{{- if or (not (kindIs "slice" $allow)) (eq (len $allow) 0) -}}
{{- fail (printf "%s: relayAllow must be a non-empty list of CIDRs (the relay accepts clients from these blocks only)" $where) -}}
{{- end -}}
{{- range $allow -}}
{{- if not (regexMatch "^[0-9a-fA-F:.]+(/[0-9]{1,3})?$" (toString .)) -}}
{{- fail (printf "%s: relayAllow entry %q is not an address block like 10.244.0.0/16" $where (toString .)) -}}
{{- end -}}
{{- end -}}
{{- $env := default list $a.extraEnv -}}
{{- if not (kindIs "slice" $env) -}}
{{- fail (printf "%s: extraEnv must be a list of {name, value}" $where) -}}
{{- end -}}
{{- range $env -}}
{{- $n := toString (default "" (and (kindIs "map" .) .name)) -}}
{{- if eq $n "" -}}
{{- fail (printf "%s: every extraEnv entry needs a name" $where) -}}
{{- end -}}
{{- if has $n $managed -}}
{{- fail (printf "%s: extraEnv sets %s, which the chart sets itself (use the account's fields)" $where $n) -}}
{{- end -}}
{{- if has $n (list "TWS_PASSWORD" "TWS_PASSWORD_PAPER" "TWSPASSWORD") -}}
{{- fail (printf "%s: extraEnv sets %s: a password never goes into the environment; it comes from existingSecret" $where $n) -}}
{{- end -}}
{{- if and (hasKey . "valueFrom") (kindIs "map" .valueFrom) (hasKey .valueFrom "secretKeyRef") -}}
{{- fail (printf "%s: extraEnv %s takes a secretKeyRef: secrets are never put into the environment (every child process would see them); they come from existingSecret as files" $where $n) -}}
{{- end -}}
{{- end -}}
{{- $resources := ternary $a.resources $v.resources (hasKey $a "resources") -}}
{{- $out = append $out (dict "name" $name "fullname" $fullname "username" $username "tradingMode" $mode "port" (ternary 4003 4004 (eq $mode "live")) "existingSecret" $secret "existingSession" $session "timeZone" $tz "relayAllow" (join "," $allow) "resources" $resources "extraEnv" $env) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
