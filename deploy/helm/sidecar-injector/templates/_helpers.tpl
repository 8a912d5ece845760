{{- define "si.labels" -}}
app.kubernetes.io/name: sidecar-injector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "si.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "si.service" -}}
sidecar-injector.{{ .Release.Namespace }}.svc
{{- end -}}

{{- define "si.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "si.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "si.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "si.tlsSecret" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{ required "certificates.secret.name is required with mode secret" .Values.certificates.secret.name }}
{{- else -}}
sidecar-injector-tls
{{- end -}}
{{- end -}}

{{/*
si.generated is the generated serving certificate as YAML (ca, crt, key,
base64): the one in the cluster when there is one, so an upgrade never
rotates the CA under running API servers, else a new CA and certificate.
Memoized per render, so the Secret and the webhook agree.
*/}}
{{- define "si.generated" -}}
{{- if not (hasKey .Values "__generated") -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace "sidecar-injector-tls" -}}
{{- if and $existing (index $existing.data "ca.crt") -}}
{{- $_ := set .Values "__generated" (dict "ca" (index $existing.data "ca.crt") "crt" (index $existing.data "tls.crt") "key" (index $existing.data "tls.key")) -}}
{{- else -}}
{{- $days := int .Values.certificates.validityDays -}}
{{- $ca := genCA "sidecar-injector-ca" $days -}}
{{- $svc := include "si.service" . -}}
{{- $cert := genSignedCert $svc nil (list $svc (printf "%s.cluster.local" $svc)) $days $ca -}}
{{- $_ := set .Values "__generated" (dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (get .Values "__generated") -}}
{{- end -}}
