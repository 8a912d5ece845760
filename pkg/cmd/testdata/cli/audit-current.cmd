audit -f testdata/cli/in/audit-current.yaml --all
