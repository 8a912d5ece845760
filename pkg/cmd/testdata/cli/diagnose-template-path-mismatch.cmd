diagnose -f testdata/cli/in/diagnose/template-path-mismatch.yaml
