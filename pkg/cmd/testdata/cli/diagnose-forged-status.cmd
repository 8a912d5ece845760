diagnose -f testdata/cli/in/diagnose/forged-status.yaml
