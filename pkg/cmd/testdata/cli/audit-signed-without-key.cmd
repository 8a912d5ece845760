audit -f testdata/cli/in/audit-signed.yaml --all
