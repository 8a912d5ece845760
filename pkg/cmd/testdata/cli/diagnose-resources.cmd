diagnose -f testdata/cli/in/diagnose/resources.yaml
