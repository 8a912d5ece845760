audit -f testdata/cli/in/audit-signed.yaml --all --status-key-dir testdata/cli/in/status-key
