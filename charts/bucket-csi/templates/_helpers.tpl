{{- define "bucket-csi.labels" -}}
app.kubernetes.io/name: bucket-csi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
{{- end }}

{{- define "bucket-csi.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* Store flags shared by the controller and the node plugin. */}}
{{- define "bucket-csi.storeArgs" -}}
- --default-store={{ .Values.defaultStore }}
- --log-level={{ .Values.logLevel }}
{{- with .Values.stores.s3 }}
{{- if .endpoint }}
- --s3-endpoint={{ .endpoint }}
{{- end }}
{{- if .region }}
- --s3-region={{ .region }}
{{- end }}
{{- if .pathStyle }}
- --s3-path-style
{{- end }}
{{- end }}
{{- with .Values.stores.gcs }}
{{- if .project }}
- --gcs-project={{ .project }}
{{- end }}
{{- if .endpoint }}
- --gcs-endpoint={{ .endpoint }}
{{- end }}
{{- end }}
{{- with .Values.stores.azure }}
{{- if .account }}
- --azure-account={{ .account }}
{{- end }}
{{- if .endpoint }}
- --azure-endpoint={{ .endpoint }}
{{- end }}
{{- end }}
{{- if .Values.stores.r2.accountID }}
- --r2-account-id={{ .Values.stores.r2.accountID }}
{{- end }}
- --ibm-region={{ .Values.stores.ibm.region }}
{{- with .Values.stores.oci }}
{{- if .region }}
- --oci-region={{ .region }}
{{- end }}
{{- if .compartment }}
- --oci-compartment={{ .compartment }}
{{- end }}
{{- if .namespace }}
- --oci-namespace={{ .namespace }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bucket-csi.credentials" -}}
{{- if .Values.credentials.existingSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.credentials.existingSecret }}
{{- end }}
{{- end }}

{{/* The Secret holding the ownership key (key "ownership.key"). */}}
{{- define "bucket-csi.ownershipSecret" -}}
{{ .Values.ownershipKey.existingSecret | default "bucket-csi-ownership-key" }}
{{- end }}
