audit -f testdata/cli/in/audit-pods.yaml
