diagnose -f testdata/cli/in/diagnose/template-env-mismatch.yaml
