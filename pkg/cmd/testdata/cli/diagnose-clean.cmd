diagnose -f testdata/cli/in/diagnose/clean.yaml
